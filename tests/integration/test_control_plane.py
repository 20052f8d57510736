"""The control plane (emulator/control/) over HTTP on a whole stack: the token, the live state of a
real call (conferences, members and their flags, connections, pipes), faults and resets, the
journal with filters and paging, /metrics parsed by Prometheus' own parser, the OpenAPI document
validated, and bad requests answered with JSON 4xx while the emulator carries on.

The stack runs on the in-memory network under the autojump clock (the control plane's hypercorn
serves virtual streams as the directory endpoint does); the HTTP client below speaks HTTP/1.1 on
a stream of the same network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from bench.cli import start_control
from emulator.net.network import VirtualNetwork
from tests.actorkit import CONF, DEV, DOCTOR, PATIENT, doctor_and_patient, in_call, members_of, stack_and_target, until

TOKEN = "test-token-123"


class Http:
    def __init__(self, network: Any, port: int) -> None:
        self.network, self.port = network, port

    async def __call__(self, method: str, path: str, *, token: str | None = TOKEN, body: Any = None,
                       raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, Any]:
        stream = await self.network.connect("127.0.0.1", self.port, client="test")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                f"Content-Length: {len(data)}"]
        if token is not None:
            head.append(f"Authorization: Bearer {token}")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        buffer = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
        await stream.aclose()
        top, _, payload = buffer.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "chunked" in hdrs.get("transfer-encoding", ""):
            payload = _dechunk(payload)
        ctype = hdrs.get("content-type", "")
        return status, hdrs, json.loads(payload) if ctype.startswith("application/json") else payload.decode()


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


@asynccontextmanager
async def control_stack(**config: Any) -> AsyncIterator[tuple[Any, Any, Http]]:
    network = VirtualNetwork()
    async with stack_and_target(network, control_token=TOKEN, **config) as (stack, target):
        control = await start_control(stack)
        assert stack.ports["control"] == control.port
        yield stack, target, Http(network, control.port)


async def test_every_api_route_needs_the_token(autojump_clock):
    async with control_stack() as (stack, _, http):
        for path in ("/api/state", "/api/conferences", "/api/journal", "/metrics", "/api/faults"):
            status, headers, body = await http("GET", path, token=None)
            assert status == 401 and body["status"] == 401 and body["error"].startswith("missing token")
            assert headers["www-authenticate"].startswith("Bearer")
            status, _, body = await http("GET", path, token="wrong")
            assert status == 401 and body["error"].startswith("wrong token")
            status, _, body = await http("GET", path, headers={"Authorization": f"Basic {TOKEN}"}, token=None)
            assert status == 401
            status, _, _ = await http("GET", path)
            assert status == 200, path
        status, _, page = await http("GET", "/dashboard", token=None)
        assert status == 200 and "<title>cometbench dashboard</title>" in page and "http" not in \
            page.split("<script>")[1].split("</script>")[0].replace("/api/", "")
        status, _, doc = await http("GET", "/openapi.json", token=None)
        assert status == 200 and doc["openapi"].startswith("3.")


async def test_the_openapi_document_is_valid_and_describes_every_route(autojump_clock):
    from openapi_spec_validator import validate

    from emulator.control.app import Control, create_app, openapi_document

    doc = openapi_document()
    validate(doc)
    async with control_stack() as (stack, _, http):
        app = create_app(Control(stack, TOKEN))
        routes = {rule.rule.replace("<path:name>", "{name}").replace("<name>", "{name}").replace("<dev_id>", "{dev_id}")
                  for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
        assert routes - {"/"} == set(doc["paths"])
        for path, item in doc["paths"].items():
            for method in item:
                rule = next(r for r in app.url_map.iter_rules() if r.rule.replace("<path:name>", "{name}")
                            .replace("<name>", "{name}").replace("<dev_id>", "{dev_id}") == path)
                assert method.upper() in rule.methods, (path, method)


async def test_live_state_of_a_call_faults_and_metrics(autojump_clock):
    from prometheus_client.parser import text_string_to_metric_families

    async with control_stack() as (stack, target, http):
        async with doctor_and_patient(target, stack.network) as (doctor, patient):
            await in_call(doctor, patient)
            await until(lambda: all(m.media == "flowing" for m in members_of(stack)) and len(members_of(stack)) == 2)
            status, _, confs = await http("GET", "/api/conferences")
            assert status == 200 and [c["name"] for c in confs] == [CONF]
            (conf,) = confs
            assert conf["room"] == "101" and conf["dev_id"] == DEV and conf["profile"] == "video"
            members = {m["user_id"]: m for m in conf["members"]}
            assert set(members) == {DOCTOR, PATIENT}
            assert all(m["media"] == "flowing" and not m["muted"] for m in members.values())
            assert sum(m["floor"] for m in members.values()) <= 1
            status, _, one = await http("GET", f"/api/conferences/{CONF}")
            assert status == 200 and one["name"] == CONF
            status, _, conns = await http("GET", f"/api/connections?dev_id={DEV}")
            assert {c["user_id"] for c in conns} == {DOCTOR, PATIENT} and all(c["authorized"] for c in conns)
            status, _, tenants = await http("GET", "/api/tenants")
            assert [t["dev_id"] for t in tenants] == [DEV] and tenants[0]["users_online"] == 2
            status, _, users = await http("GET", f"/api/tenants/{DEV}/users")
            assert [u["user_id"] for u in users] == sorted([DOCTOR, PATIENT])
            status, _, pipes = await http("GET", "/api/pipes")
            call_pipes = [p for p in pipes if p["pipe"].startswith("web_syscall_")]
            assert len(call_pipes) == 1 and call_pipes[0]["subscribers"] == 2
            assert call_pipes[0]["users"] == sorted([DOCTOR, PATIENT])

            # a mute (FreeSWITCH's flag) shows in the member's flags, in the summary and in /metrics
            patient_member = members[PATIENT]["id"]
            status, _, done = await http("POST", "/api/faults/mute",
                                         body={"conference": CONF, "member": patient_member})
            assert status == 200 and done["fault"] == "mute" and "OK mute" in done["reply"]
            status, _, conf = await http("GET", f"/api/conferences/{CONF}")
            assert [m["muted"] for m in conf["members"] if m["id"] == patient_member] == [True]
            status, _, state = await http("GET", "/api/state")
            assert state["members"] == 2 and state["muted"] == 1 and state["conferences"] == 1
            status, headers, text = await http("GET", "/metrics")
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(text)}
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
            assert samples[("cometbench_conference_members", (("state", "all"),))] == 2
            assert samples[("cometbench_conference_members", (("state", "muted"),))] == 1
            assert samples[("cometbench_comet_connections", (("dev_id", str(DEV)),))] == 2
            assert samples[("cometbench_call_invites_total", ())] == 2
            assert families["cometbench_join_seconds"].type == "histogram"
            assert samples[("cometbench_join_seconds_count", ())] == 2
            # the server-side join (INSERT -> media) is the media model's ~0.4 s on loopback
            assert samples[("cometbench_join_seconds_bucket", (("le", "0.25"),))] == 0
            assert samples[("cometbench_join_seconds_bucket", (("le", "1.0"),))] == 2

            # a live conference limit, then a kick: the member leaves and the page's call ends
            status, _, done = await http("POST", "/api/faults/conference_limit",
                                         body={"conference": CONF, "max_members": 2})
            assert status == 200 and stack.bridge.conference(CONF).max_members == 2
            status, _, done = await http("POST", "/api/faults/kick",
                                         body={"conference": CONF, "member": patient_member})
            assert status == 200
            await until(lambda: len(members_of(stack)) == 1)
            await patient.wait_mark("call_end", timeout=10)

            # drop a client: its WebSocket connections go, the page reconnects on its own
            before = [c.id for c in stack.hub.user_connections(DEV, DOCTOR)]
            status, _, done = await http("POST", "/api/faults/drop_client", body={"dev_id": DEV, "user_id": DOCTOR})
            assert status == 200 and done["connections"] == before
            await until(lambda: not set(before) & set(stack.hub.connections))
            status, _, faults = await http("GET", "/api/faults")
            assert [f["fault"] for f in faults["history"]] == ["mute", "conference_limit", "kick", "drop_client"]
            assert len(stack.journal.entries(service="control", kind="fault")) == 4


async def test_the_journal_pages_filters_and_resets(autojump_clock):
    async with control_stack() as (stack, target, http):
        async with doctor_and_patient(target, stack.network) as (doctor, patient):
            await in_call(doctor, patient)
            await until(lambda: len(members_of(stack)) == 2 and all(m.media == "flowing" for m in members_of(stack)))
            status, _, page = await http("GET", "/api/journal?limit=5")
            assert status == 200 and len(page["entries"]) == 5 and page["more"]
            seqs = [e["seq"] for e in page["entries"]]
            status, _, nxt = await http("GET", f"/api/journal?limit=5&after={page['next_after']}")
            assert nxt["entries"][0]["seq"] > seqs[-1]
            status, _, marks = await http("GET", f"/api/journal?service=bench&kind=mark&user_id={PATIENT}&limit=1000")
            assert marks["entries"] and all(e["kind"] == "mark" and e["user_id"] == PATIENT for e in marks["entries"])
            status, _, tail = await http("GET", "/api/journal/tail?limit=1000")
            assert any(e["service"] == "freeswitch" and e["kind"] == "media" for e in tail["entries"])
            assert not any(e["kind"] == "frame" for e in tail["entries"])
            old_run = stack.journal.run_id
            status, _, done = await http("POST", "/api/reset", body={"what": ["conferences", "journal"]})
            assert status == 200 and done["conferences"] == [CONF] and done["journal"]["run_id"] != old_run
            await until(lambda: stack.bridge.conferences == {})
            status, _, runs = await http("GET", "/api/journal/runs")
            assert runs["current"] == stack.journal.run_id and [r["run_id"] for r in runs["runs"]][-2:] == [
                old_run, stack.journal.run_id]
            status, _, fresh = await http("GET", "/api/journal?limit=1000")
            assert all(e["run_id"] == stack.journal.run_id for e in fresh["entries"])
            status, _, old = await http("GET", f"/api/journal?run={old_run}&limit=3")
            assert status == 200 and all(e["run_id"] == old_run for e in old["entries"])
            status, _, done = await http("POST", "/api/reset", body={"what": "state"})
            assert status == 200 and done["state"]["connections_dropped"] >= 2
            assert stack.store.get_hash(DEV, DOCTOR) is None


@pytest.mark.parametrize("method, path, body, status, words", [
    ("POST", "/api/faults/explode", {}, 404, "unknown fault 'explode'"),
    ("POST", "/api/faults/drop_client", {"dev_id": DEV, "user_id": 999}, 404, "user 999 of dev_id 15 has no open"),
    ("POST", "/api/faults/drop_client", {"dev_id": DEV}, 400, "missing field 'user_id'"),
    ("POST", "/api/faults/drop_client", {"dev_id": "x", "user_id": 1}, 400, "'dev_id' must be an integer"),
    ("POST", "/api/faults/kick", {"conference": "15*nope-FSdefaultDomain", "member": 1}, 404, "no conference"),
    ("POST", "/api/faults/mute", {"conference": CONF}, 404, "no conference"),
    ("POST", "/api/faults/conference_limit", {"conference": 5, "max_members": 1}, 400, "'conference' must be"),
    ("POST", "/api/faults/kick", b"{not json", 400, "not valid JSON"),
    ("POST", "/api/faults/kick", [1, 2], 400, "must be a JSON object"),
    ("POST", "/api/faults/network", {"user": "patient", "profile": "3g"}, 404, "no client 'patient' has a connection"),
    ("POST", "/api/faults/network", {"profile": "moon"}, 404, "unknown network profile 'moon'"),
    ("POST", "/api/faults/network", {"protocol": "smtp", "profile": "3g"}, 400, "unknown protocol 'smtp'"),
    ("POST", "/api/faults/network", {"action": "explode"}, 400, "unknown network action 'explode'"),
    ("POST", "/api/faults/network", {"action": "partition", "duration": -1}, 400, "'duration' must be a positive"),
    ("POST", "/api/faults/restart", {"service": "mysql"}, 400, "unknown service 'mysql' to restart"),
    ("POST", "/api/faults/restart", {"service": "comet", "downtime": 9999}, 400, "'downtime' must be 0-600"),
    ("POST", "/api/reset", {"what": ["everything"]}, 400, "unknown reset 'everything'"),
    ("GET", "/api/faults/kick", None, 405, "GET is not allowed"),
    ("GET", "/api/nothing", None, 404, "no such endpoint"),
    ("GET", "/api/tenants/77/users", None, 404, "no tenant with dev_id 77"),
    ("GET", "/api/tenants/x/users", None, 400, "dev_id must be a number"),
    ("GET", "/api/connections?dev_id=abc", None, 400, "'dev_id' must be an integer"),
    ("GET", "/api/journal?limit=0", None, 400, "'limit' must be at least 1"),
    ("GET", "/api/journal?colour=red", None, 400, "unknown query parameter 'colour'"),
    ("GET", "/api/journal?run=nope", None, 404, "no journal run 'nope'"),
    ("GET", "/api/conferences/15*9-FSdefaultDomain", None, 404, "no conference"),
])
async def test_bad_requests_get_json_errors_and_the_emulator_carries_on(autojump_clock, method, path, body, status,
                                                                         words):
    async with control_stack() as (stack, _, http):
        raw = body if isinstance(body, bytes) else None
        got, headers, answer = await http(method, path, body=None if raw else body, raw=raw)
        assert got == status, answer
        assert headers["content-type"].startswith("application/json")
        assert answer["status"] == status and words in answer["error"], answer["error"]
        ok, _, state = await http("GET", "/api/state")
        assert ok == 200 and state["profile"] == "cppcomet-4.09"


async def test_network_and_restart_faults(autojump_clock):
    from emulator.net.links import get_profile

    async with control_stack() as (stack, target, http):
        async with doctor_and_patient(target, stack.network) as (doctor, patient):
            await in_call(doctor, patient)
            await until(lambda: len(members_of(stack)) == 2)
            # a link profile for one actor's SIP, then every protocol of the other partitioned and healed
            status, _, done = await http("POST", "/api/faults/network",
                                         body={"client": "patient", "protocol": "sip", "profile": "3g"})
            assert status == 200 and done["profile"] == "3g"
            assert stack.links.link("patient", "sip") == get_profile("3g")
            assert stack.links.link("patient", "comet") != get_profile("3g")
            status, _, done = await http("POST", "/api/faults/network",
                                         body={"client": "doctor", "action": "partition", "duration": 5})
            assert status == 200 and stack.links.partitioned("doctor", "comet")
            status, _, done = await http("POST", "/api/faults/network", body={"client": "doctor", "action": "heal"})
            assert status == 200 and not stack.links.partitioned("doctor", "comet")
            status, _, done = await http("POST", "/api/faults/network", body={"action": "clear"})
            assert status == 200 and stack.links.rules() == {}
            # FreeSWITCH restarts: every member is gone at once, and the control plane still answers
            status, _, done = await http("POST", "/api/faults/restart", body={"service": "freeswitch", "downtime": 1})
            assert status == 200 and done["service"] == "freeswitch"
            assert members_of(stack) == []
            status, _, state = await http("GET", "/api/state")
            assert status == 200 and state["members"] == 0
            status, _, faults = await http("GET", "/api/faults")
            assert [f["fault"] for f in faults["history"]] == ["network", "network", "network", "network", "restart"]
