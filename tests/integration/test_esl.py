"""The ESL listener against a stand-in bridge: auth, api, bgapi, events in three formats, exit, bad input."""

from __future__ import annotations

import json
import urllib.parse

import trio

from emulator.freeswitch.esl import EslServer
from emulator.journal import Journal
from emulator.net.network import VirtualNetwork
from emulator.wire import esl as e


class FakeBridge:
    """A stand-in for the bridge: the EslBridge protocol of emulator/freeswitch/esl.py."""

    def __init__(self):
        self.subscribers = []
        self.commands = []

    def session_count(self):
        return 0

    def api(self, command):
        self.commands.append(command)
        if command == "conference list":
            return "No active conferences.\n"
        return "OK mute 7\n"

    def subscribe(self, cb):
        self.subscribers.append(cb)
        return lambda: self.subscribers.remove(cb)

    def fire(self, headers, body=""):
        class Ev:
            pass
        ev = Ev()
        ev.headers, ev.body = headers, body
        ev.name = dict(headers)["Event-Name"]
        ev.subclass = dict(headers).get("Event-Subclass", "")
        for cb in list(self.subscribers):
            cb(ev)


class Client:
    def __init__(self, stream):
        self.stream = stream
        self.buf = b""

    async def read(self):
        """One server message: (headers dict, body)."""
        while b"\n\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\n\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\n"))
        n = int(headers.get("Content-Length", 0))
        while len(self.buf) < n:
            self.buf += await self.stream.receive_some(65536)
        body, self.buf = self.buf[:n], self.buf[n:]
        return headers, body.decode()

    async def send(self, text):
        await self.stream.send_all(text.encode() + b"\n\n")

    async def closed(self):
        try:
            while True:
                if not await self.stream.receive_some(65536):
                    return True
        except trio.BrokenResourceError:
            return True


async def start(nursery, bridge):
    net = VirtualNetwork()
    server = EslServer(bridge, net, Journal(enabled=False))
    await nursery.start(server.serve, "127.0.0.1", 8021)
    client = Client(await net.connect("127.0.0.1", 8021))
    assert (await client.read())[0] == {"Content-Type": "auth/request"}
    return server, client, net


async def test_auth_api_and_exit(autojump_clock):
    bridge = FakeBridge()
    async with trio.open_nursery() as nursery:
        server, c, net = await start(nursery, bridge)
        await c.send("api status")
        assert (await c.read())[0]["Reply-Text"] == "-ERR command not found"
        await c.send("auth ClueCon")
        assert (await c.read())[0] == {"Content-Type": "command/reply", "Reply-Text": "+OK accepted"}
        await c.send("api conference list")
        headers, body = await c.read()
        assert headers["Content-Type"] == "api/response" and body == "No active conferences.\n"
        await c.send("api status")
        assert (await c.read())[1].startswith("UP 0 years, 0 days")
        await c.send("api nosuch thing")
        assert (await c.read())[1] == "-ERR nosuch Command not found!\n"
        await c.send("frobnicate")
        assert (await c.read())[0]["Reply-Text"] == "-ERR command not found"
        await c.send("exit")
        assert (await c.read())[0]["Reply-Text"] == "+OK bye"
        headers, body = await c.read()
        assert headers["Content-Type"] == "text/disconnect-notice" and body == e.DISCONNECT_TEXT
        assert await c.closed()
        nursery.cancel_scope.cancel()


async def test_wrong_password(autojump_clock):
    async with trio.open_nursery() as nursery:
        server, c, net = await start(nursery, FakeBridge())
        await c.send("auth wrong")
        assert (await c.read())[0]["Reply-Text"] == "-ERR invalid"
        assert (await c.read())[0]["Content-Type"] == "text/disconnect-notice"
        assert await c.closed()
        nursery.cancel_scope.cancel()


async def test_events_in_three_formats_and_bgapi(autojump_clock):
    bridge = FakeBridge()
    headers = [("Event-Name", "CUSTOM"), ("Event-Subclass", "conference::maintenance"),
               ("Conference-Name", "15*101-FSdefaultDomain"), ("Action", "add-member")]
    async with trio.open_nursery() as nursery:
        server, c, net = await start(nursery, bridge)
        await c.send("auth ClueCon")
        await c.read()
        await c.send("event plain CUSTOM conference::maintenance")
        assert (await c.read())[0]["Reply-Text"] == "+OK event listener enabled plain"
        bridge.fire([("Event-Name", "CHANNEL_CREATE")])  # not subscribed: not delivered
        bridge.fire(headers)
        h, body = await c.read()
        assert h["Content-Type"] == "text/event-plain"
        fields = dict(line.split(": ", 1) for line in body.strip().split("\n"))
        assert urllib.parse.unquote(fields["Conference-Name"]) == "15*101-FSdefaultDomain"
        assert fields["Event-Subclass"] == "conference%3A%3Amaintenance"
        await c.send("event json ALL")
        await c.read()
        bridge.fire([("Event-Name", "CHANNEL_CREATE"), ("Unique-ID", "u1")])
        h, body = await c.read()
        assert h["Content-Type"] == "text/event-json" and json.loads(body)["Unique-ID"] == "u1"
        await c.send("bgapi conference 15*101-FSdefaultDomain mute 7")
        h, _ = await c.read()
        job = h["Job-UUID"]
        assert h["Reply-Text"] == f"+OK Job-UUID: {job}"
        h, body = await c.read()
        event = json.loads(body)
        assert event["Event-Name"] == "BACKGROUND_JOB" and event["Job-UUID"] == job
        assert event["_body"] == "OK mute 7\n"
        await c.send("event xml ALL")
        await c.read()
        bridge.fire(headers)
        h, body = await c.read()
        assert h["Content-Type"] == "text/event-xml" and "<Action>add-member</Action>" in body
        await c.send("noevents")
        assert (await c.read())[0]["Reply-Text"] == "+OK no longer listening for events"
        bridge.fire(headers)
        await c.send("api conference list")
        assert (await c.read())[0]["Content-Type"] == "api/response"  # no event in between
        nursery.cancel_scope.cancel()


async def test_garbage_and_half_open_connections(autojump_clock):
    bridge = FakeBridge()
    async with trio.open_nursery() as nursery:
        server, c, net = await start(nursery, bridge)
        await c.stream.send_all(b"x" * 70000)  # no blank line, over the limit
        assert (await c.read())[0]["Content-Type"] == "text/disconnect-notice"
        assert await c.closed()
        half = Client(await net.connect("127.0.0.1", 8021))
        await half.read()
        await half.stream.send_all(b"auth Clue")  # never finishes; the client vanishes
        await half.stream.aclose()
        await trio.sleep(0.1)
        ok = Client(await net.connect("127.0.0.1", 8021))
        await ok.read()
        await ok.send("auth ClueCon")
        assert (await ok.read())[0]["Reply-Text"] == "+OK accepted"
        await trio.sleep(0.1)
        assert server.connections == 1
        nursery.cancel_scope.cancel()


def test_command_parser_handles_split_input_and_bodies():
    p = e.CommandParser()
    p.feed(b"api sta")
    assert p.next_command() is None
    p.feed(b"tus\r\n\r\nsendmsg\ncall-command: execute\nContent-Length: 3\n\nabc")
    assert p.next_command().line == "api status"
    cmd = p.next_command()
    assert cmd.word == "sendmsg" and cmd.headers["call-command"] == "execute" and cmd.body == "abc"
