"""A small raw MySQL client for tests that need control over every byte.

Only what the tests need: read packets, send a HandshakeResponse41 (native password token from
pymysql's implementation, so the check is independent of ours), send commands.
"""

from __future__ import annotations

import struct

import trio
from pymysql._auth import scramble_native_password

# CONNECT_WITH_DB | PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_WITH_DB | LONG_PASSWORD ...
CAPS = 0x000FA68D


class RawMySQL:
    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def open(cls, network, port: int) -> RawMySQL:
        return cls(await network.connect("127.0.0.1", port))

    async def read_packet(self) -> tuple[int, bytes]:
        while len(self.buffer) < 4:
            await self.fill()
        n = self.buffer[0] | self.buffer[1] << 8 | self.buffer[2] << 16
        while len(self.buffer) < 4 + n:
            await self.fill()
        seq, payload = self.buffer[3], bytes(self.buffer[4:4 + n])
        del self.buffer[:4 + n]
        return seq, payload

    async def fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError(bytes(self.buffer))
        self.buffer += data

    async def send(self, payload: bytes, seq: int) -> None:
        await self.stream.send_all(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    async def greeting(self) -> dict:
        seq, p = await self.read_packet()
        assert seq == 0 and p[0] == 10
        end = p.index(b"\0", 1)
        version = p[1:end].decode()
        pos = end + 1
        conn_id = struct.unpack("<I", p[pos:pos + 4])[0]
        salt1 = p[pos + 4:pos + 12]
        caps_low = struct.unpack("<H", p[pos + 13:pos + 15])[0]
        charset = p[pos + 15]
        status = struct.unpack("<H", p[pos + 16:pos + 18])[0]
        caps_high = struct.unpack("<H", p[pos + 18:pos + 20])[0]
        salt2 = p[pos + 31:pos + 43]
        plugin = p[pos + 44:].rstrip(b"\0").decode()
        return {"version": version, "conn_id": conn_id, "scramble": salt1 + salt2, "caps": caps_high << 16 | caps_low,
                "charset": charset, "status": status, "plugin": plugin, "raw": p}

    def response(self, user: str, token: bytes, database: str | None = "CometQL_v1",
                 plugin: str = "mysql_native_password", caps: int = CAPS) -> bytes:
        if database is None:
            caps &= ~0x8
        out = struct.pack("<IIB", caps, 1 << 24, 33) + b"\0" * 23 + user.encode() + b"\0"
        out += bytes([len(token)]) + token
        if database is not None:
            out += database.encode() + b"\0"
        return out + plugin.encode() + b"\0"

    async def login(self, user="1", password="CometQLPassword", database: str | None = "CometQL_v1"):
        g = await self.greeting()
        await self.send(self.response(user, scramble_native_password(password.encode(), g["scramble"]), database), 1)
        return await self.read_packet()

    async def query(self, sql: str | bytes, seq: int = 0) -> list[tuple[int, bytes]]:
        """Send COM_QUERY; return every packet of the answer (a result set ends with its 2nd EOF)."""
        data = sql.encode() if isinstance(sql, str) else sql
        await self.send(b"\x03" + data, seq)
        return await self.answer()

    async def answer(self) -> list[tuple[int, bytes]]:
        first = await self.read_packet()
        if first[1][:1] in (b"\x00", b"\xff", b"\xfe"):
            return [first]
        packets, eofs = [first], 0
        while eofs < 2:
            packet = await self.read_packet()
            packets.append(packet)
            if packet[1][:1] == b"\xfe" and len(packet[1]) < 9:
                eofs += 1
        return packets

    async def closed(self) -> bool:
        try:
            await self.read_packet()
            return False
        except (EOFError, trio.BrokenResourceError):
            return True


def err_of(packet: tuple[int, bytes]) -> tuple[int, str] | None:
    payload = packet[1]
    if payload[:1] != b"\xff":
        return None
    return struct.unpack("<H", payload[1:3])[0], payload[9:].decode()


def rows_of(packets: list[tuple[int, bytes]]) -> list[list[str]]:
    """Decode the text rows of a result set (lengths < 251 only; enough for tests)."""
    out, eofs = [], 0
    for _, p in packets[1:]:
        if p[:1] == b"\xfe" and len(p) < 9:
            eofs += 1
            continue
        if eofs == 1:
            row, pos = [], 0
            while pos < len(p):
                n = p[pos]
                row.append(p[pos + 1:pos + 1 + n].decode())
                pos += 1 + n
            out.append(row)
    return out
