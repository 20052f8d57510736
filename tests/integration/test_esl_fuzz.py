"""Fuzzing the ESL listener end to end (whole stack, virtual network, virtual time).

Random and mutated command streams, before and after ``auth``, cut into random chunks: whatever
the server writes is a sequence of well-formed event-socket messages (a header block, then exactly
``Content-Length`` bytes of body); the connection ends cleanly or stays usable; a bystander
listener keeps answering ``api status``; nothing is logged as an error.
"""

from __future__ import annotations

import logging

import pytest
import trio
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.config import Config
from emulator.net.network import VirtualNetwork
from emulator.stack import open_stack
from tests.fuzzing import fuzz_settings
from tests.hostile import closed_within
from tests.unit.wire.test_esl_fuzz import mutated_stream

pytestmark = pytest.mark.fuzz("esl")


def parse_server_output(data: bytes) -> list[dict[str, str]]:
    """Split what the server sent into messages; assert each is framed correctly."""
    messages = []
    while data:
        head, sep, rest = data.partition(b"\n\n")
        assert sep, f"a header block without its blank line: {data[:80]!r}"
        fields = dict(line.split(": ", 1) for line in head.decode().split("\n"))
        n = int(fields.get("Content-Length", 0))
        assert len(rest) >= n, f"body cut short: {fields}"
        fields["_body"] = rest[:n].decode()
        messages.append(fields)
        data = rest[n:]
    return messages


@fuzz_settings(60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(streams=st.lists(st.tuples(st.booleans(), st.one_of(mutated_stream(), st.binary(max_size=300)),
                                  st.lists(st.integers(1, 50), max_size=6)), min_size=1, max_size=3))
async def test_fuzzed_command_streams(streams, autojump_clock, caplog):
    caplog.set_level(logging.WARNING)
    net = VirtualNetwork()
    cfg = Config(sip_tls=False)
    cfg.free_ports()
    async with open_stack(cfg, network=net) as stack:
        port = stack.ports["esl"]
        bystander = await net.connect("127.0.0.1", port)
        await bystander.receive_some(65536)
        await bystander.send_all(b"auth ClueCon\n\nevent plain ALL\n\n")
        for authenticate, data, cuts in streams:
            stream = await net.connect("127.0.0.1", port)
            if authenticate:
                data = b"auth ClueCon\n\n" + data
            pos = 0
            try:
                for cut in [*cuts, len(data)]:
                    await stream.send_all(data[pos:pos + cut])
                    pos += cut
                    await trio.sleep(0.01)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            closed, received = await closed_within(stream, 1.0)
            messages = parse_server_output(received)
            assert messages and messages[0]["Content-Type"] == "auth/request"
            if closed:  # the server hung up: always with a goodbye (bad input, wrong password, exit)
                assert messages[-1]["Content-Type"] == "text/disconnect-notice", messages[-1]
            await stream.aclose()
        await bystander.send_all(b"api status\n\n")
        _, answer = await closed_within(bystander, 0.5)
        assert b"is ready" in answer
        kinds = {e["kind"] for e in stack.journal.entries(service="esl")}
        assert "error" not in kinds
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
