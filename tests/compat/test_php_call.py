"""The demo backend's CometQL statements from PHP (mysqli) against the emulator.

tests/compat/demo_backend.php does what the video-chat demo's auth.php and call.php do, sending the
same SQL text, with ``php`` and mysqli against the emulator on 127.0.0.1:

1. ``auth``: ``INSERT INTO users_auth`` stores the invited user's key;
2. a raw WebSocket client (tests/rawws.py) logs in as that user, as CometServerApi.js does;
3. ``call``: ``INSERT INTO conference`` runs, and the WebSocket client must receive the
   ``msg.sys_sipCall`` frame, exact bytes except the fresh callKey.

The statements the emulator received are checked against the demo's exact text (no space before
``VALUES(``, a space before the closing parenthesis), which its CometQL grammar must accept.
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
from tests.compat.conftest import require_tool
from tests.rawws import RawWS

pytestmark = pytest.mark.compat

DEV = 15
USER = 123456     # the demo picks a random 0..999999
TIMEOUT = 20
BACKEND = Path(__file__).with_name("demo_backend.php")
# the statements the demo's auth.php and call.php send for USER (room 101, message {}, profile video)
AUTH_SQL = f"INSERT INTO users_auth (id, hash)VALUES('{USER}', 'PassForUser{USER}' );"
CALL_SQL = ("INSERT INTO conference (name, user_id, caller_id, message, profile)"
            f"VALUES('101', '{USER}', '{USER}', '{{}}', 'video' );")


def php_mysqli() -> str:
    def probe() -> bool:
        php = shutil.which("php")
        return php is not None and subprocess.run(
            [php, "-r", 'exit(function_exists("mysqli_connect") ? 0 : 1);'], capture_output=True).returncode == 0

    require_tool("php + mysqli", probe, "apt-get install -y php-cli php-mysql")
    return shutil.which("php")  # type: ignore[return-value]


async def run_php(php: str, mode: str, port: int) -> dict:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process([php, str(BACKEND), mode, str(port), str(USER)], capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, (done.stdout.decode(), done.stderr.decode())
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


async def test_call_php_invites_the_user_over_websocket():
    php = php_mysqli()

    cfg = Config()
    cfg.free_ports()
    cfg.freeswitch = [{"server": "127.0.0.1", "ws_port": 7443}]
    async with open_stack(cfg, network=OSNetwork()) as stack:
        port = stack.ports["cometql"]
        assert await run_php(php, "auth", port) == {"affected_rows": 1, "errno": 0, "error": ""}
        assert stack.hub.get_hash(DEV, USER) == f"PassForUser{USER}"

        with trio.fail_after(TIMEOUT):
            ws = await RawWS.open(OSNetwork(), stack.ports["ws"],
                                  f"/ws/sesion=PassForUser{USER}&myid={USER}&devid={DEV}&v=4.08&uuid={'a' * 32}&api=js")
            info = json.loads(await ws.recv())
            assert info["event"] == "serverInfo" and info["authorized"] is True

            assert await run_php(php, "call", port) == {"affected_rows": 1, "errno": 0, "error": ""}
            frame = await ws.recv()
        queries = [e["data"] for e in stack.journal.entries(service="cometql", kind="query")]

    assert queries == [AUTH_SQL, CALL_SQL]

    pipe = call_pipe(f"{DEV}*101*video", "127.0.0.1", 7443, DEV, "0000000")
    key = re.search(r'"callKey":"([0-9a-f-]{36})"', frame)
    assert key is not None
    assert frame == ('{"data":{"message":"{}","sys":{"callKey":"' + key.group(1) + '","callPipe":"' + pipe +
                     f'","caller_id":{USER},"conference":"true","conference_name":"101","mode":"video",'
                     '"serverName":"127.0.0.1","serverPort":7443,"sipNumber":"15*101*video","stream":0}},'
                     '"event":"sys_sipCall","pipe":"msg"}')
    assert key.group(1)[14] == "1"  # a version-1 (time-based) UUID
