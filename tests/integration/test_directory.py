"""The ``[freeswitch]`` directory endpoint over real HTTP on 127.0.0.1 (spec video-call-flow.md 2.6.4).

Clients: a plain blocking ``socket`` (exact bytes, and whether the server closes) and ``urllib``
(what an HTTP library makes of the answers), both run in a thread while the stack serves.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
import trio

from emulator.comet.directory import (
    DIRECTORY_XML,
    classify,
    directory_password,
    directory_user,
    lookup_directory,
    split_sip_user,
)
from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from emulator.state import StateStore
from tests.rawmysql import RawMySQL, err_of

HASH = "PassForUser123"
# what mod_xml_curl sends for a REGISTER (2.6.3), user 000015123
XML_CURL = ("/directory?hostname=fs1&section=directory&tag_name=domain&key_name=name&key_value=FSdefaultDomain"
            "&Event-Name=REQUEST_PARAMS&Core-UUID=2d238269-084a-4243-9b4b-b3bdd54fa4bc&action=sip_auth"
            "&sip_profile=internal&sip_auth_username={user}&sip_auth_realm=127.0.0.1&sip_auth_method=REGISTER"
            "&key=id&user={user}&domain=FSdefaultDomain&ip=127.0.0.1")


def config() -> Config:
    cfg = Config()
    cfg.free_ports()
    return cfg


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``, read until the server closes.  (bytes received, closed by the server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk


def get(path: str, user_agent: str = "freeswitch-xml/1.0") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n\r\n".encode()


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def urlopen(url: str, method: str = "GET"):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as answer:
        return answer.status, dict(answer.headers), answer.read()


async def in_thread(fn, *args):
    return await trio.to_thread.run_sync(fn, *args)


# --- over real sockets -------------------------------------------------------------------------------------


async def test_found_user_gets_the_document_and_the_connection_closes():
    async with open_stack(config()) as stack:
        stack.hub.set_hash(15, 123, HASH)
        port = stack.ports["directory"]
        response, closed = await in_thread(raw_request, port, get(XML_CURL.format(user="000015123")))
    assert closed
    status, headers, body = split(response)
    assert status == "HTTP/1.1 200 "  # the original says "200 OK": ASGI has no reason phrase
    assert headers["content-type"] == "text/html; charset=UTF-8" and headers["connection"] == "close"
    assert headers["server"] == "Star.Comet Server" and headers["allow"] == "GET"
    assert body.decode() == DIRECTORY_XML % ("000015123", HASH, "000015123", "000015123", "000015123")
    doc = ET.fromstring(body)
    assert doc.get("type") == "freeswitch/xml"
    domain = doc.find("section[@name='directory']/domain")
    assert domain is not None and domain.get("name") == "FSdefaultDomain"
    assert domain.find("params/param[@name='dial-string']") is not None
    user = domain.find("groups/group[@name='default']/users/user")
    assert user is not None and user.get("id") == "000015123"
    assert user.find("params/param[@name='password']").get("value") == HASH
    variables = {v.get("name"): v.get("value") for v in user.find("variables")}
    assert variables == {
        "toll_allow": "domestic,international,local", "accountcode": "000015123", "user_context": "default",
        "effective_caller_id_name": "Extension 000015123", "effective_caller_id_number": "000015123",
        "outbound_caller_id_name": "$${outbound_caller_name}", "outbound_caller_id_number": "$${outbound_caller_id}",
        "callgroup": "techsupport"}


async def test_urllib_both_paths_and_a_hash_written_over_cometql():
    async with open_stack(config()) as stack:
        base = f"http://127.0.0.1:{stack.ports['directory']}"
        # the app backend's auth.php: INSERT INTO users_auth over CometQL (a real TCP connection)
        backend = await RawMySQL.open(OSNetwork(), stack.ports["cometql"])
        await backend.login("15")
        assert err_of((await backend.query("INSERT INTO users_auth (id, hash) VALUES (123, 'PassForUser123')"))[0]) \
            is None
        for prefix in ("", "/comet-server-com"):
            status, headers, body = await in_thread(urlopen, base + prefix + XML_CURL.format(user="000015123"))
            assert status == 200 and headers["content-type"] == "text/html; charset=UTF-8"
            assert b'<param name="password" value="PassForUser123"/>' in body
        # the domain parameter is ignored; the reply always names FSdefaultDomain
        status, _, body = await in_thread(urlopen, base + "/directory?a=1&user=000015123&domain=other.example&x")
        assert status == 200 and b'<domain name="FSdefaultDomain">' in body


@pytest.mark.parametrize("query", [
    "/directory?section=directory&user=000015&domain=FSdefaultDomain",        # fewer than 7 characters
    "/directory?section=directory&user=000015999&domain=FSdefaultDomain",     # no users_auth hash
    "/directory?section=directory&user=000016123&domain=FSdefaultDomain",     # another dev_id's user
    "/directory?section=directory&purpose=gateways&profile=internal",         # no user at all (2.6.6)
    "/directory?user=000015123&domain=FSdefaultDomain",                       # first parameter: no '&' before it
    "/directory?x&user=abcdefghij&domain=FSdefaultDomain",                    # not <6 digits><digits>
])
async def test_404_without_body(query):
    async with open_stack(config()) as stack:
        stack.hub.set_hash(15, 123, HASH)
        port = stack.ports["directory"]
        response, closed = await in_thread(raw_request, port, get(query))
        with pytest.raises(urllib.error.HTTPError) as info:
            await in_thread(urlopen, f"http://127.0.0.1:{port}{query}")
    assert closed
    status, headers, body = split(response)
    assert status == "HTTP/1.1 404 " and body == b"" and headers["connection"] == "close"
    assert info.value.code == 404


@pytest.mark.parametrize("query", [
    "/directory?a=1&user=000015123",                      # the value is not followed by '&'
    "/directory?a=1&user=&domain=FSdefaultDomain",        # empty value
    "/directory?a=1&user=" + "1" * 64 + "&domain=x",      # 64 characters or more
])
async def test_bad_user_parameter_closes_without_an_answer(query):
    async with open_stack(config()) as stack:
        stack.hub.set_hash(15, 123, HASH)
        port = stack.ports["directory"]
        response, closed = await in_thread(raw_request, port, get(query))
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await in_thread(urlopen, f"http://127.0.0.1:{port}{query}")
    assert (response, closed) == (b"", True)


async def test_options_other_gets_and_other_methods():
    async with open_stack(config()) as stack:
        port = stack.ports["directory"]
        response, closed = await in_thread(raw_request, port, b"OPTIONS /directory HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed
        status, headers, body = split(response)
        assert (status, body) == ("HTTP/1.1 200 ", b"+OK\r\n") and headers["allow"] == "POST, GET"
        assert headers["access-control-allow-origin"] == "*"

        for path in ("/", "/favicon.ico", "/dir", "/info?x=1&user=000015123&y"):
            response, closed = await in_thread(raw_request, port, get(path, "Mozilla/5.0"))
            status, headers, body = split(response)
            assert closed and status == "HTTP/1.1 200 " and b"Star.Comet Server" in body, path
        status, _, body = await in_thread(urlopen, f"http://127.0.0.1:{port}/")
        assert status == 200 and b"<html>" in body

        for request in (b"POST /directory HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n"):
            assert await in_thread(raw_request, port, request) == (b"", True)


async def test_keep_alive_requests_are_still_answered_once_and_closed():
    async with open_stack(config()) as stack:
        stack.hub.set_hash(15, 123, HASH)
        port = stack.ports["directory"]
        two = get(XML_CURL.format(user="000015123")) + get(XML_CURL.format(user="000015123"))
        response, closed = await in_thread(raw_request, port, two)
    assert closed and response.count(b"HTTP/1.1 200") == 1


async def test_ready_line_and_journal():
    async with open_stack(config()) as stack:
        assert stack.ready_line()["directory"] == stack.ports["directory"] > 0
        stack.hub.set_hash(15, 123, HASH)
        await in_thread(raw_request, stack.ports["directory"], get(XML_CURL.format(user="000015123")))
        stack.journal.flush()
        kinds = [(e["service"], e["kind"]) for e in stack.journal.entries()]
    assert ("directory", "lookup") in kinds


# --- the same endpoint on the virtual network -------------------------------------------------------------


async def test_virtual_network(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stack.hub.set_hash(15, 123, HASH)
        stream = await net.connect("127.0.0.1", stack.ports["directory"])
        await stream.send_all(get(XML_CURL.format(user="000015123")))
        received = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 ") and HASH.encode() in received


# --- the pure rules ---------------------------------------------------------------------------------------


def test_lookup_directory_and_password():
    store = StateStore()
    store.set_hash(15, 123, HASH)
    store.set_hash(1, 7, "k7")
    assert lookup_directory(store, "000015123")[0] == 200
    assert lookup_directory(store, "000001007") == (200, DIRECTORY_XML % (("000001007", "k7") + ("000001007",) * 3))
    assert lookup_directory(store, "00001512") == (404, "")   # user 12: no hash
    assert lookup_directory(store, "000015") == (404, "")
    assert lookup_directory(store, "0000150") == (404, "")    # user 0
    assert directory_password(store, "000015123") == HASH
    assert directory_password(store, "000015124") is None
    assert split_sip_user("000015123") == (15, 123)
    assert split_sip_user("0000151234567890") == (15, 123456789)  # at most 9 digits of user id


def test_directory_user_walks_the_raw_request_like_the_original():
    assert directory_user(b"GET /directory?a&user=000015123&domain=x HTTP/1.1\r\n") == b"000015123"
    assert directory_user(b"GET /directory?user=000015123&domain=x HTTP/1.1\r\n") == b""  # needs a '&' before
    assert directory_user(b"GET /directory?a&sip_user=1&domain=x HTTP/1.1\r\n") == b""
    assert directory_user(b"GET /directory?a&user=000015123 HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert directory_user(b"GET /directory?a&user=000015123 HTTP/1.1\r\nCookie: a&b\r\n\r\n") == \
        b"000015123 HTTP/1.1\r\nCookie: a"  # the value runs to the next '&', wherever it is
    assert directory_user(b"GET /directory?a&&user=000015123&d HTTP/1.1\r\n") == b""  # '&&' ends the walk
    # a later, shorter value is copied over the earlier one in the same 64-byte buffer
    assert directory_user(b"GET /d?a&user=0000151234&user=999&x") == b"9990151234"
    assert directory_user(b"GET /d?a&user=00\x0015123&x") is None  # a C string ends at the NUL
    assert classify(b"GET /directory?a&user=1&b") == ("directory", b"1")
    assert classify(b"GET /directoryfoo?a&user=1&b") == ("directory", b"1")  # a prefix match, as there
    assert classify(b"GET /comet-server-com/directory?a&user=1") == ("close", None)
    assert classify(b"OPTIONS * HTTP/1.1") == ("options", None)
    assert classify(b"GET /x") == ("page", None)
    assert classify(b"get /x") == ("close", None)
