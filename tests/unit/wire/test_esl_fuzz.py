"""Fuzzing the event-socket codec (``emulator/wire/esl.py``).

* :class:`CommandParser` turns any bytes, cut anywhere, into commands or :class:`EslError` and
  nothing else; a stream of valid commands parses the same however it is chunked;
* the server-side builders always frame their output correctly: the outer ``Content-Length``
  is the payload's length, a JSON event parses back to its headers, a plain event's inner
  ``Content-Length`` is its body's, whatever the header values and bodies contain.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.wire import esl as e
from tests.fuzz.corpus import ESL
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("esl")
FAST = fuzz_settings(300, suppress_health_check=[HealthCheck.too_slow])


def parse_all(chunks: list[bytes]) -> tuple[list[e.Command], bool]:
    parser = e.CommandParser(max_size=4096)
    commands: list[e.Command] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (command := parser.next_command()) is not None:
                assert isinstance(command.line, str) and command.word == command.word.lower()
                assert isinstance(command.rest, str) and isinstance(command.body, str)
                commands.append(command)
    except e.EslError:
        return commands, True
    return commands, False


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos:pos + cut])
        pos += cut
    return chunks + [data[pos:]]


@FAST
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=10))
def test_random_bytes_give_commands_or_esl_error(data, cuts):
    parse_all(split(data, cuts))


@st.composite
def mutated_stream(draw) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(ESL), min_size=1, max_size=6))))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "newline", "length"]))
        if op == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 10))]
        elif op == "newline":
            data[i:i] = draw(st.sampled_from([b"\n", b"\n\n", b"\r\n", b"\r\n\r\n"]))
        else:
            data[i:i] = b"\nContent-Length: " + str(draw(st.integers(-5, 10_000))).encode() + b"\n"
    return bytes(data)


@FAST
@given(mutated_stream(), st.lists(st.integers(1, 40), max_size=12))
def test_mutated_command_streams(data, cuts):
    whole, whole_failed = parse_all([data])
    chunked, chunked_failed = parse_all(split(data, cuts))
    assert whole_failed == chunked_failed
    assert [(c.line, c.headers, c.body) for c in whole] == [(c.line, c.headers, c.body) for c in chunked]


@FAST
@given(st.lists(st.sampled_from(ESL), min_size=1, max_size=8), st.integers(1, 50))
def test_valid_commands_parse_the_same_in_any_chunking(seeds, size):
    data = b"".join(seeds)
    whole, failed = parse_all([data])
    chunked, _ = parse_all([data[i:i + size] for i in range(0, len(data), size)])
    assert not failed and len(whole) == sum(1 for s in seeds if s.strip()) == len(chunked)


HEADER = st.tuples(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters=":\n\r"),
                           min_size=1, max_size=20),
                   st.text(max_size=60))


@FAST
@given(st.lists(HEADER, max_size=8), st.text(max_size=200))
def test_event_builders_frame_any_headers_and_body(headers, body):
    headers = [("Event-Name", "CUSTOM"), *headers]
    for build in (e.event_plain, e.event_json, e.event_xml):
        out = build(headers, body)
        head, _, payload = out.partition(b"\n\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\n"))
        assert int(fields["Content-Length"]) == len(payload)
        assert fields["Content-Type"] == f"text/event-{build.__name__.split('_')[1]}"
    decoded = json.loads(e.event_json(headers, body).partition(b"\n\n")[2])
    assert decoded["Event-Name"] == "CUSTOM" and decoded.get("_body", "") == body
    plain = e.event_plain(headers, body).partition(b"\n\n")[2]
    if body:
        inner_head, _, inner_body = plain.partition(b"\n\n")
        assert inner_head.endswith(b"Content-Length: %d" % len(body.encode())) and inner_body == body.encode()
    for _name, value in headers[1:]:  # plain values are url-encoded: no raw newline can split a header
        assert "\n" not in e.url_encode(value)


def test_a_body_is_taken_raw_however_the_bytes_arrive():
    """Found by the long fuzz run: a CR LF inside a body was rewritten to LF when the body arrived
    in the same read as its command (the CR/LF normalisation ran over the whole buffer)."""
    data = b"\x00pi conference xml_list\nContent-Length: 1\n\n\r\n\n"
    for cuts in ([], [1, 1, 1, 40], [len(data) - 3]):
        commands, failed = parse_all(split(data, cuts))
        assert not failed and [(c.line, c.body) for c in commands] == [("\x00pi conference xml_list", "\r")]
    commands, _ = parse_all([b"sendmsg x\r\nContent-Length: 4\r\n\r\na\r\nb"])
    assert commands[0].headers == {"Content-Length": "4"} and commands[0].body == "a\r\nb"
    commands, _ = parse_all([b"\r\n\r\napi status\n\r\n"])  # CRs between the LFs do not matter
    assert [c.line for c in commands] == ["api status"]
