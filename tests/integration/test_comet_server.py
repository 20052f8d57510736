"""The comet WebSocket server end to end, over real sockets and over the virtual network."""

from __future__ import annotations

import json

import pytest
import trio

from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from tests.rawws import RawWS

UUID_A = "uuidA000000000000000000000000501"


def path(key="validkey501", user=501, dev=1, uuid=UUID_A):
    return f"/ws/sesion={key}&myid={user}&devid={dev}&v=4.08&uuid={uuid}&api=js"


def config(**kw) -> Config:
    cfg = Config(**kw)
    cfg.free_ports()
    return cfg


async def _exact_handshake_and_server_info(network):
    async with open_stack(config(), network=network) as stack:
        stack.hub.set_hash(1, 501, "validkey501")
        ws = await RawWS.open(network, stack.ports["ws"], path())
        assert ws.response == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               b"Sec-WebSocket-Version: 13\r\n\r\n")
        head, payload = await ws.recv_raw()
        assert head == bytes.fromhex("817e009b")  # as the real server sent it (reference-observations 4)
        info = json.loads(payload)
        assert info["authorized"] is True and info["data"] == "validkey501"
        await ws.send("subscription\nweb_test")
        await trio.sleep(0.05)
        stack.hub.publish(1, "web_test", "ev", "hello")
        head, payload = await ws.recv_raw()
        assert head == bytes.fromhex("814e") and json.loads(payload)["data"] == "hello"
        await ws.aclose()


async def test_exact_bytes_over_os_sockets():
    await _exact_handshake_and_server_info(OSNetwork())


async def test_exact_bytes_over_virtual_network(autojump_clock):
    await _exact_handshake_and_server_info(VirtualNetwork())


async def test_client_close_frame_is_answered_by_tcp_close_and_track_event():
    network = OSNetwork()
    async with open_stack(config(), network=network) as stack:
        a = await RawWS.open(network, stack.ports["ws"], path("x", 1, uuid="a" * 32))
        b = await RawWS.open(network, stack.ports["ws"], path("x", 2, uuid="b" * 32))
        await a.recv(), await b.recv()
        await a.send("subscription\ntrack_ref5")
        await trio.sleep(0.05)
        await b.send("subscription\ntrack_ref5")
        assert json.loads(await a.recv())["event"] == "subscription"
        await b.send(b"\x03\xe8", opcode=0x8)  # Close(1000)
        assert await b.closed_by_server()
        got = json.loads(await a.recv())
        assert got["event"] == "unsubscription" and got["data"] == {"user_id": 0, "uuid": "b" * 32}
        with trio.fail_after(2):
            while len(stack.hub.connections) != 1:  # b is forgotten, a stays
                await trio.sleep(0.01)
        await a.aclose()


@pytest.mark.parametrize("target,code", [("/ws/nothing", 401), ("/ws/sesion=a&myid=1", 406),
                                         ("/comet-server/ws/sesion=a&myid=1&devid=1", 418)])
async def test_url_errors_then_close(target, code, autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network) as stack:
        ws = await RawWS.open(network, stack.ports["ws"], target)
        frame = json.loads(await ws.recv())
        assert frame["pipe"] == "sys" and frame["event"] == "error"
        assert json.loads(frame["data"])["error_code"] == code  # the v<4 shape: data is a JSON string
        assert await ws.closed_by_server()
        assert stack.hub.connections == {}


async def test_server_side_kick_is_a_tcp_close(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network) as stack:
        stack.hub.set_hash(1, 501, "validkey501")
        ws = await RawWS.open(network, stack.ports["ws"], path())
        await ws.recv()
        await trio.sleep(0.01)
        assert stack.hub.delete_hash(1, 501) == 1
        assert await ws.closed_by_server()


async def test_state_file_survives_a_restart(tmp_path):
    network = OSNetwork()
    cfg = config(state=str(tmp_path / "state.sqlite"))
    async with open_stack(cfg, network=network) as stack:
        stack.hub.set_hash(1, 501, "validkey501")
        stack.hub.send_to_user(1, 501, "uev", "queued before restart")
    async with open_stack(cfg, network=network) as stack:
        ws = await RawWS.open(network, stack.ports["ws"], path())
        assert json.loads(await ws.recv())["authorized"] is True
        queued = json.loads(await ws.recv())
        assert queued["data"] == "queued before restart" and queued["fromQueue"] is True
        await ws.aclose()
    assert (tmp_path / "journal.sqlite").exists()


async def test_journal_records_frames_and_lifecycle(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network) as stack:
        ws = await RawWS.open(network, stack.ports["ws"], path("nope", 3))
        await ws.recv()
        await ws.send("subscription\nweb_j")
        await trio.sleep(0.1)
        await ws.aclose()
        await trio.sleep(0.1)
        kinds = [(e["kind"], e["direction"]) for e in stack.journal.entries(service="comet")]
        assert kinds[:4] == [("connect", ""), ("frame", "out"), ("frame", "in"), ("disconnect", "")]
        connect = stack.journal.entries(kind="connect")[0]
        assert connect["user_id"] == 3 and "authorized=False" in connect["data"]


async def test_journal_off_records_nothing(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(journal=False), network=network) as stack:
        ws = await RawWS.open(network, stack.ports["ws"], path("nope", 3))
        await ws.recv()
        assert stack.journal.entries() == []
