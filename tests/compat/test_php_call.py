"""The demo backend's PHP against the emulator: auth.php's and call.php's CometQL queries, text unchanged.

The two PHP fragments are read from the seed (../shared/seed/call-procedure.ru.md) at run time and
pasted verbatim into a PHP script run by ``php`` with mysqli, against the emulator on 127.0.0.1:

1. auth.php's ``INSERT INTO users_auth`` stores the invited user's key;
2. a raw WebSocket client (tests/rawws.py) logs in as that user, as CometServerApi.js does;
3. call.php's ``INSERT INTO conference`` runs, and the WebSocket client must receive the
   ``msg.sys_sipCall`` frame (video-call-flow.md 2.3.6), exact bytes except the fresh callKey.

call.php's text calls ``mysql_real_escape_string($link, ...)``: the old ext/mysql name with mysqli's
argument order.  PHP 7 removed ext/mysql, so the script defines a one-line shim with that name that
forwards to ``mysqli_real_escape_string`` *above* the unchanged query text (as a PHP 7+ deployment of
the demo must do to run at all).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from emulator.cometql.conference import call_pipe
from emulator.config import Config
from emulator.net.network import OSNetwork
from emulator.stack import open_stack
from tests.compat.conftest import ROOT, require_tool
from tests.rawws import RawWS

pytestmark = pytest.mark.compat

from tests.paths import SEED  # noqa: E402
DEV = 15
USER = 123456     # the demo picks a random 0..999999
TIMEOUT = 20


def php_mysqli() -> str:
    def probe() -> bool:
        php = shutil.which("php")
        return bool(php) and subprocess.run(
            [php, "-r", 'exit(function_exists("mysqli_connect") ? 0 : 1);'], capture_output=True).returncode == 0

    require_tool("php + mysqli", probe, "apt-get install -y php-cli php-mysql")
    return shutil.which("php")  # type: ignore[return-value]


def seed_fragment(starts: str, ends: str) -> str:
    """The seed's PHP lines from the one starting with ``starts`` to the next ending with ``ends``."""
    if not SEED.exists():
        pytest.fail(f"seed missing: {SEED}")
    lines = SEED.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(starts))
    last = next(i for i in range(first, len(lines)) if lines[i].rstrip().endswith(ends))
    return "\n".join(lines[first:last + 1])


AUTH_PHP = seed_fragment("mysqli_query(", ");")                             # auth.php
CALL_PHP = seed_fragment('$query = "INSERT INTO conference', "' );\";")     # call.php

SCRIPT = """<?php
// CometQL backend of the video-chat demo.  argv: mode (auth|call), CometQL port, user id.
mysqli_report(MYSQLI_REPORT_OFF);

// Shim (not part of the seed): ext/mysql is gone since PHP 7; the seed's call.php calls
// mysql_real_escape_string with mysqli's argument order ($link first).
if (!function_exists('mysql_real_escape_string')) {
    function mysql_real_escape_string($link, $string) { return mysqli_real_escape_string($link, $string); }
}

$mode = $argv[1];
$link = mysqli_connect("127.0.0.1", "15", "CometQLPassword", "CometQL_v1", (int)$argv[2]);
if (!$link) { fwrite(STDERR, mysqli_connect_error()); exit(2); }
$user_id = $argv[3];

if ($mode === "auth") {
    $user_key = "PassForUser" . $user_id;
// ---- auth.php, verbatim from the seed ----
%(auth)s
// ----
} else {
    $room = "101";
    $caller_id = $user_id;
    $message = "{}";
    $profile = "video";
// ---- call.php, verbatim from the seed ----
%(call)s
// ----
    mysqli_query($link, $query);
}
echo json_encode(["affected_rows" => mysqli_affected_rows($link), "errno" => mysqli_errno($link),
                  "error" => mysqli_error($link)]), "\\n";
mysqli_close($link);
"""


def test_seed_fragments_are_the_expected_ones():
    assert AUTH_PHP.splitlines()[0] == "mysqli_query(  " and "INSERT INTO users_auth (id, hash)VALUES('" in AUTH_PHP
    assert CALL_PHP.splitlines()[0] == '$query = "INSERT INTO conference (name, user_id, caller_id, message, profile)VALUES(\'"'
    assert CALL_PHP.count(".mysql_real_escape_string($link, $") == 5 and len(CALL_PHP.splitlines()) == 6


async def run_php(php: str, script: Path, mode: str, port: int) -> dict:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process([php, str(script), mode, str(port), str(USER)], capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, (done.stdout.decode(), done.stderr.decode())
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


async def test_call_php_invites_the_user_over_websocket(tmp_path):
    php = php_mysqli()
    script = tmp_path / "backend.php"
    script.write_text(SCRIPT % {"auth": AUTH_PHP, "call": CALL_PHP}, encoding="utf-8")

    cfg = Config()
    cfg.free_ports()
    cfg.freeswitch = [{"server": "127.0.0.1", "ws_port": 7443}]
    async with open_stack(cfg, network=OSNetwork()) as stack:
        port = stack.ports["cometql"]
        assert await run_php(php, script, "auth", port) == {"affected_rows": 1, "errno": 0, "error": ""}
        assert stack.hub.get_hash(DEV, USER) == f"PassForUser{USER}"

        with trio.fail_after(TIMEOUT):
            ws = await RawWS.open(OSNetwork(), stack.ports["ws"],
                                  f"/ws/sesion=PassForUser{USER}&myid={USER}&devid={DEV}&v=4.08&uuid={'a' * 32}&api=js")
            info = json.loads(await ws.recv())
            assert info["event"] == "serverInfo" and info["authorized"] is True

            assert await run_php(php, script, "call", port) == {"affected_rows": 1, "errno": 0, "error": ""}
            frame = await ws.recv()

    pipe = call_pipe(f"{DEV}*101*video", "127.0.0.1", 7443, DEV, "0000000")
    key = re.search(r'"callKey":"([0-9a-f-]{36})"', frame)
    assert key is not None
    assert frame == ('{"data":{"message":"{}","sys":{"callKey":"' + key.group(1) + '","callPipe":"' + pipe +
                     f'","caller_id":{USER},"conference":"true","conference_name":"101","mode":"video",'
                     '"serverName":"127.0.0.1","serverPort":7443,"sipNumber":"15*101*video","stream":0}},'
                     '"event":"sys_sipCall","pipe":"msg"}')
    assert key.group(1)[14] == "1"  # a version-1 (time-based) UUID
