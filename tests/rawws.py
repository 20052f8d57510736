"""A deliberately small raw WebSocket client for tests that need exact bytes on the wire."""

from __future__ import annotations

import os
import struct

import trio

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(payload: bytes | str, opcode: int = 0x1, fin: bool = True, mask: bool = True,
          declared_length: int | None = None) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if declared_length is None else declared_length
    head = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWS:
    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.buffer = bytearray()
        self.response = b""     # the server's answer to the upgrade request

    @classmethod
    async def open(cls, network, port: int, target: str, extra: str = "") -> RawWS:
        stream = await network.connect("127.0.0.1", port)
        ws = cls(stream)
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode())
        ws.response = await ws.read_until(b"\r\n\r\n")
        return ws

    async def fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self.fill():
                raise EOFError(bytes(self.buffer))
        end = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    async def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self.fill():
                raise EOFError(bytes(self.buffer))
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def recv_raw(self) -> tuple[bytes, bytes]:
        """(header bytes, payload) of the next server frame; EOFError when TCP closes."""
        head = await self.read_exact(2)
        n = head[1] & 0x7F
        if n == 126:
            ext = await self.read_exact(2)
            head += ext
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = await self.read_exact(8)
            head += ext
            n = struct.unpack("!Q", ext)[0]
        return head, await self.read_exact(n)

    async def recv(self) -> str:
        return (await self.recv_raw())[1].decode()

    async def send(self, text: str | bytes, opcode: int = 0x1) -> None:
        await self.stream.send_all(frame(text, opcode))

    async def closed_by_server(self) -> bool:
        """True if the next thing the server does is close TCP (no more frames, no Close frame)."""
        try:
            while True:
                head, _ = await self.recv_raw()
                if head[0] & 0x0F == 0x8:
                    return False  # a Close frame: the real server never sends one
        except EOFError:
            return True
        except trio.BrokenResourceError:
            return True

    async def aclose(self) -> None:
        await self.stream.aclose()
