"""Local CA + server certificate: made once, reused, trusted by a client that trusts the CA."""

from __future__ import annotations

import trio

from emulator.freeswitch.tls import ensure_certificates


def test_certificates_are_made_once_and_cover_names(tmp_path):
    a = ensure_certificates(tmp_path, ["sip.example.test"])
    first = a.server_cert.read_bytes()
    b = ensure_certificates(tmp_path, ["sip.example.test"])
    assert b.server_cert.read_bytes() == first  # reused
    c = ensure_certificates(tmp_path, ["other.test"])
    assert c.server_cert.read_bytes() != first  # re-issued for a new name, same CA
    assert c.ca_cert.read_bytes() == a.ca_cert.read_bytes()
    assert len(a.media_fingerprint.split(":")) == 32


async def test_tls_handshake_with_the_local_ca(tmp_path):
    certs = ensure_certificates(tmp_path)
    listeners = await trio.open_ssl_over_tcp_listeners(0, certs.server_context(), host="127.0.0.1")
    port = listeners[0].transport_listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        async def echo(stream):
            data = await stream.receive_some(10)
            await stream.send_all(data)
        nursery.start_soon(trio.serve_listeners, echo, listeners)
        for host in ("127.0.0.1", "localhost"):
            client = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=certs.client_context())
            await client.send_all(b"ping")
            assert await client.receive_some(10) == b"ping"
            await client.aclose()
        nursery.cancel_scope.cancel()
