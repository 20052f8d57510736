"""Property test of the hub: random command texts from a few fake connections in two tenants.

Whatever the clients send, the hub must

* never raise;
* only deliver text that is a JSON object with ``pipe``, ``event`` and ``data`` (what every server
  frame carries, comet-ws-protocol.md 4.1) — or, in the faithful profile only, a frame of 123-125
  bytes cut short and NUL-padded by the real server's short-frame writer (reference-observations
  S10, S18);
* never let a frame caused by one dev_id's command reach a connection of another dev_id.

A connection the hub closes (unknown command, over-long subscription) is replaced by a fresh one
with the same URL, so the run keeps exercising connect, presence and disconnect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.clock import ManualClock
from emulator.comet.hub import Connection, Hub
from emulator.profiles import get_profile
from emulator.state import StateStore
from emulator.wire import comet as w
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("comet-ws")

PROFILES = ("cppcomet-4.09", "lenient")

# (dev_id, user_id, key, major): authorised and anonymous users, a shared user id across tenants,
# two tabs of one user, and an old 3.x client
CLIENTS = [
    (1, 5, "key5", 4),
    (1, 5, "key5", 4),
    (1, 0, "undefined", 4),
    (1, 6, "wrong", 3),
    (2, 5, "key5-dev2", 4),
    (2, 0, "", 4),
]

COMMAND_WORDS = list(w.COMMAND_PREFIXES) + ["subscriptionX", "web_pipe", "pipe", "", "SUBSCRIPTION", "ping",
                                            "track_pipe_user", "user_data2", " web_pipe2"]
NAMES = ["web_a", "web_b", "track_a", "track_b", "private_a", "webauth_a", "@web_a", "@track_a", "trust_a",
         "user_status_5", "user_status_0", "msg", "sys", "ab", "a", "", "x" * 64, "y" * 65, "web_" + "z" * 61,
         "web_ä", "web a", "5", "-1", "0", "99999999999999999999", "M1", "1234567890", "undefined"]


def _arg() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NAMES),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", max_size=70),
        st.text(max_size=40),  # any unicode, including NUL, newlines and surrogate-free astral chars
        st.integers(-(2**40), 2**40).map(str),
        st.just('{"text":"hi","n":1}'),
        st.just('"it\'s \\"quoted\\""'),
    )


PIPES = ["web_a", "web_b", "track_a", "track_b", "private_a", "webauth_a", "@web_a", "trust_a", "user_status_5",
         "user_status_6", "ab", "x" * 64, "y" * 65, "web_" + "z" * 60, "web_ä", "tr ack"]
MARKERS = ["M1", "1234567890", "", "m" * 65, "bad marker", "ü"]
USERS = ["5", "6", "0", "-1", "undefined", " 5", "5x", "99999999999999999999", ""]


@st.composite
def structured_command(draw) -> str:
    """One of the commands a client really sends, with realistic and broken arguments."""
    pipe = st.one_of(st.sampled_from(["web_a", "track_a", "user_status_5"]), st.sampled_from(["web_a", "web_b"]),
                     st.sampled_from(PIPES), st.sampled_from(NAMES))
    marker = st.one_of(st.sampled_from(MARKERS), _arg())
    kind = draw(st.sampled_from(["subscription", "subscription", "web_pipe2", "web_pipe2", "web_pipe2", "pipe_log",
                                 "pipe_count", "track_pipe_users", "user_data", "user_status", "statistics",
                                 "cgi_call", "CometQL_call"]))
    if kind == "subscription":
        names = draw(st.lists(pipe, max_size=6))
        if draw(st.integers(0, 15)) == 0:
            names = [f"web_n{i}" for i in range(draw(st.integers(30, 40)))]
        return "subscription\n" + "\n".join(names)
    if kind == "web_pipe2":
        auth = draw(st.sampled_from(["*", "*", "*", "", "**", "x"]))
        event = draw(st.one_of(st.sampled_from(["ev", "said", "e" * 65, "", "bad event", "undefined"]), _arg()))
        return f"web_pipe2\n{draw(pipe)}\n{event}\n{auth}\n{draw(_arg())}"
    if kind in ("pipe_log", "pipe_count"):
        return f"{kind}\n{draw(pipe)}\n{draw(marker)}\n"
    if kind == "track_pipe_users":
        return f"track_pipe_users\n{draw(pipe)}\n{draw(marker)}"
    if kind == "user_data":
        return f"user_data\n{draw(marker)}\n{draw(st.one_of(st.sampled_from(USERS), _arg()))}"
    if kind == "user_status":
        return f"user_status\n{draw(st.one_of(st.sampled_from(USERS), _arg()))}"
    return kind + "\n" + draw(_arg())


@st.composite
def random_command(draw) -> str:
    """A command word (valid or not), a separator and random arguments."""
    word = draw(st.sampled_from(COMMAND_WORDS))
    args = draw(st.lists(_arg(), max_size=6))
    sep = draw(st.sampled_from(["\n", "\n", "\n", "\r\n", " ", "", "\n\n"]))
    return word + sep + sep.join(args) if args else word + draw(st.sampled_from(["", "\n", sep]))


@st.composite
def command_text(draw) -> str:
    text = draw(st.one_of(structured_command(), structured_command(), structured_command(), random_command(),
                          st.text(max_size=80)))
    if draw(st.integers(0, 5)) == 0:
        # mutate: random newlines or random unicode at random places
        for _ in range(draw(st.integers(1, 3))):
            p = draw(st.integers(0, len(text)))
            text = text[:p] + draw(st.one_of(st.just("\n"), st.text(min_size=1, max_size=3))) + text[p:]
    return text


@dataclass
class Client:
    spec: tuple[int, int, str, int]
    frames: list[str] = field(default_factory=list)
    conn: Connection | None = None
    dropped: bool = False


@dataclass
class Run:
    hub: Hub
    faithful: bool
    clients: list[Client]
    current_dev: int | None = None  # the dev_id whose action is running
    log: list[tuple[int, int, str]] = field(default_factory=list)  # (cause dev, receiver dev, text)

    def deliver_to(self, client: Client):
        def deliver(text: str, wire: bytes | None) -> None:
            client.frames.append(text)
            assert self.current_dev is not None, "a frame was delivered outside any action"
            self.log.append((self.current_dev, client.spec[0], text))
        return deliver

    def connect(self, client: Client) -> None:
        dev, user, key, major = client.spec
        client.dropped = False
        url = f"/ws/sesion={key}&myid={user}&devid={dev}&v={major}.08&uuid={self.hub.stats['connects']:032d}&api=js"

        def drop() -> None:
            client.dropped = True

        self.current_dev = dev
        client.conn = self.hub.connect(w.parse_url(url), deliver=self.deliver_to(client), drop=drop)
        self.current_dev = None

    def command(self, client: Client, text: str) -> None:
        assert client.conn is not None
        self.current_dev = client.spec[0]
        self.hub.command(client.conn, text)
        self.current_dev = None
        self.reconnect_dropped()

    def reconnect_dropped(self) -> None:
        for c in self.clients:
            assert c.conn is not None
            if c.dropped or not c.conn.open:
                assert c.conn.id not in self.hub.connections
                self.connect(c)

    def disconnect(self, client: Client) -> None:
        assert client.conn is not None
        self.current_dev = client.spec[0]
        self.hub.disconnect(client.conn, "fuzz")
        self.current_dev = None
        self.connect(client)


def make_run(profile_name: str) -> Run:
    store = StateStore(":memory:")
    hub = Hub(store, get_profile(profile_name), clock=ManualClock())
    hub.set_hash(1, 5, "key5")
    hub.set_hash(2, 5, "key5-dev2")
    hub.set_hash(1, 6, "right")
    hub.set_pipe_log_length(1, "web_a", 5)
    hub.set_pipe_log_length(2, "web_a", 5)
    hub.set_user_data(1, 5, '{"rand":"7"}')
    run = Run(hub, profile_name == "cppcomet-4.09", [Client(spec) for spec in CLIENTS])
    for c in run.clients:
        run.connect(c)
    for c in run.clients:  # start from shared pipes, so that fan-out and presence happen from the first step
        run.command(c, "subscription\nweb_a\ntrack_a\nuser_status_5\nuser_status_6")
    return run


def check_frame(text: str, faithful: bool) -> None:
    size = len(text.encode("utf-8"))
    try:
        obj = json.loads(text)
    except ValueError:
        assert faithful, f"lenient profile sent invalid JSON: {text!r}"
        assert 123 <= size <= 125, f"invalid JSON frame of {size} bytes: {text!r}"
        kept = text.rstrip("\x00")
        assert text.endswith("\x00") and len(kept.encode("utf-8")) <= w.SHORT_FRAME_KEEP, repr(text)
        return
    assert isinstance(obj, dict), text
    assert {"pipe", "event", "data"} <= obj.keys(), text
    if faithful:
        assert not 123 <= size <= 125, f"a 123-125 byte frame escaped the short-frame quirk: {text!r}"


ACTIONS = st.lists(
    st.tuples(st.integers(0, len(CLIENTS) - 1),
              st.integers(0, 11).flatmap(lambda n: st.just(None) if n == 0 else command_text())),
    min_size=1, max_size=40)


@fuzz_settings(300, suppress_health_check=[HealthCheck.too_slow])
@given(profile_name=st.sampled_from(PROFILES), actions=ACTIONS)
def test_random_commands_never_crash_leak_or_emit_garbage(profile_name, actions):
    run = make_run(profile_name)
    for index, text in actions:
        client = run.clients[index]
        if text is None:
            run.disconnect(client)  # the TCP connection went away
        else:
            run.command(client, text)
        run.hub.clock.advance(0.4)
    for cause, receiver, text in run.log:
        assert cause == receiver, f"dev {cause}'s action reached dev {receiver}: {text!r}"
        check_frame(text, run.faithful)
    # the hub's bookkeeping stays consistent: every live connection is registered in its pipes
    for conn in run.hub.connections.values():
        tenant = run.hub.tenant(conn.dev_id)
        for pipe in conn.pipes:
            assert tenant.pipes[pipe][conn.id] is conn
    for tenant in run.hub.tenants.values():
        for pipe, members in tenant.pipes.items():
            assert members, f"empty pipe {pipe} kept"
            for conn in members.values():
                assert conn.open and conn.dev_id == tenant.dev_id


@fuzz_settings(200)
@given(profile_name=st.sampled_from(PROFILES), texts=st.lists(st.text(max_size=200), min_size=1, max_size=10))
def test_arbitrary_unicode_frames(profile_name, texts):
    run = make_run(profile_name)
    for i, text in enumerate(texts):
        run.command(run.clients[i % len(run.clients)], text)
    for cause, receiver, text in run.log:
        assert cause == receiver
        check_frame(text, run.faithful)
