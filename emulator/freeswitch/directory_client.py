"""mod_xml_curl's side of the directory: the fake FreeSWITCH asks a directory URL for SIP passwords.

When the fake FreeSWITCH runs without the emulator's own comet side (``comet_emulated = false``, the
FreeSWITCH node of a real CppComet), it looks SIP passwords up the way a real FreeSWITCH configured by
the CppComet role does: an HTTP GET to ``<directory_url>/directory?...&user=<sip user>&domain=...``
(spec video-call-flow.md 2.6.3), the comet server's ``[freeswitch]`` port answering with a
``freeswitch/xml`` document whose ``<user id=...>`` carries ``<param name="password" value=...>``
(or 404: no such user).  The request carries mod_xml_curl's parameters in its order, with ``user=``
followed by ``&domain=`` as the comet server's parser needs.

:class:`DirectoryClient` speaks HTTP/1.1 over the network seam (one connection per lookup,
``Connection: close``, as mod_xml_curl does), so the lookup pays the link's round trips like every
other protocol.  It returns the password, or None for "no such user" and for a directory that fails
to answer (FreeSWITCH then answers 403, as with a static directory that does not know the user).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import trio

from emulator.config import DEFAULT_DOMAIN
from emulator.journal import Journal
from emulator.net.network import Network

__all__ = ["DirectoryClient", "DirectoryUrl", "parse_directory_url", "password_from_xml"]

MAX_ANSWER = 1 << 20


@dataclass(frozen=True)
class DirectoryUrl:
    host: str
    port: int
    prefix: str      # "" or "/comet-server-com" (whatever precedes /directory)

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


def parse_directory_url(text: str) -> DirectoryUrl:
    """``http://HOST:PORT[/prefix]`` -> :class:`DirectoryUrl`; a ValueError says what is wrong."""
    parts = urlsplit(text.strip())
    if parts.scheme != "http":
        raise ValueError(f"directory_url {text!r} must start with http:// (mod_xml_curl's gateway-url)")
    if not parts.hostname:
        raise ValueError(f"directory_url {text!r} has no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"directory_url {text!r} has a bad port") from None
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/directory"):
        prefix = prefix[: -len("/directory")]
    return DirectoryUrl(parts.hostname, port, prefix)


def password_from_xml(body: str, user: str) -> str | None:
    """The ``password`` param of ``<user id=user>`` in a freeswitch/xml directory document."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for node in root.iter("user"):
        if node.get("id") != user:
            continue
        for param in node.iter("param"):
            if param.get("name") == "password":
                return param.get("value")
    return None


class DirectoryClient:
    def __init__(self, url: DirectoryUrl, network: Network, journal: Journal, *, domain: str = DEFAULT_DOMAIN,
                 hostname: str = "cometbench", timeout: float = 10.0) -> None:
        self.url = url
        self.network = network
        self.journal = journal
        self.domain = domain
        self.hostname = hostname
        self.timeout = timeout
        self.lookups = 0

    def request_target(self, user: str, method: str, realm: str, ip: str) -> str:
        q = quote
        params = [("hostname", self.hostname), ("section", "directory"), ("tag_name", "domain"),
                  ("key_name", "name"), ("key_value", self.domain), ("Event-Name", "REQUEST_PARAMS"),
                  ("Core-UUID", ""), ("FreeSWITCH-Hostname", self.hostname), ("action", "sip_auth"),
                  ("sip_profile", "internal"), ("sip_user_agent", "JsSIP"), ("sip_auth_username", user),
                  ("sip_auth_realm", realm), ("sip_auth_method", method), ("key", "id"), ("user", user),
                  ("domain", self.domain), ("ip", ip)]
        return f"{self.url.prefix}/directory?" + "&".join(f"{k}={q(v, safe='')}" for k, v in params)

    async def password(self, user: str, *, method: str = "REGISTER", realm: str = "", ip: str = "") -> str | None:
        """The SIP password of ``user`` from the directory, or None (unknown user, or no answer)."""
        self.lookups += 1
        target = self.request_target(user, method, realm, ip)
        head = (f"GET {target} HTTP/1.1\r\nHost: {self.url.host}:{self.url.port}\r\n"
                "User-Agent: freeswitch-xml/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()
        try:
            with trio.fail_after(self.timeout):
                stream = await self.network.connect(self.url.host, self.url.port, client="freeswitch")
                try:
                    await stream.send_all(head)
                    answer = bytearray()
                    while len(answer) < MAX_ANSWER:
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            break
                        answer += chunk
                finally:
                    await trio.aclose_forcefully(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            self.journal.record("sip", "directory_failed", data=f"{self.url} user={user}: {exc!r}"[:300])
            return None
        status_line, _, rest = bytes(answer).partition(b"\r\n")
        fields = status_line.split(b" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if status != 200:
            if status == 0:
                self.journal.record("sip", "directory_failed", data=f"{self.url} user={user}: no HTTP answer")
            return None
        _, _, body = rest.partition(b"\r\n\r\n")
        return password_from_xml(body.decode("utf-8", "replace"), user)
