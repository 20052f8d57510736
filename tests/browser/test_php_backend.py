"""The demo app with a PHP backend: fixtures/demo_app/backend/ (auth.php, call.php) under ``php -S``.

The demo page's backend calls take the seed's parameters, so the page runs the same against the
bench's endpoints or against PHP scripts that talk CometQL with mysqli.  Here the patient's page
(Chromium) signs in and joins through PHP -- mysqli_connect per request, the demo's statement text
-- and meets a virtual doctor.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import replace

import pytest
import trio

from bench.browser.profile import DEMO_DIR, load_profile
from tests.browser.conftest import journal_rows, tell_story
from tests.compat.test_php_call import php_mysqli

pytestmark = pytest.mark.compat


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_demo_app_with_a_php_backend(browser_tools, tmp_path):
    php = php_mysqli()
    port = free_port()
    process: dict = {}

    async def story(s):
        env = dict(os.environ, COMETQL_HOST="127.0.0.1", COMETQL_PORT=str(s.stack.ports["cometql"]),
                   COMETQL_DEV_ID=str(s.dev_id), COMETQL_PASSWORD=s.stack.config.password)
        # Popen starts the server and returns: nothing here waits for the process
        process["php"] = subprocess.Popen(  # noqa: ASYNC220
            [php, "-S", f"127.0.0.1:{port}", "-t", str(DEMO_DIR / "backend")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with trio.fail_after(10):
            while True:
                try:
                    (await trio.open_tcp_stream("127.0.0.1", port)).socket.close()
                    break
                except OSError:
                    await trio.sleep(0.05)
        with s.step("the doctor (virtual) and the patient (demo page, PHP backend) meet"):
            await s.meet("101", s.doctor, s.patient)
        process["user"] = s.patient.user_id

    app = replace(load_profile("demo"), demo_backend=f"http://127.0.0.1:{port}/")
    try:
        result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path, app=app)
    finally:
        if "php" in process:
            process["php"].terminate()
            process["php"].wait(timeout=10)
    assert result.passed, result.failure
    user = process["user"]
    queries = [r["data"] for r in journal_rows(tmp_path / "journal.sqlite", service="cometql", kind="query")]
    assert f"INSERT INTO users_auth (id, hash)VALUES('{user}', 'PassForUser{user}' );" in queries
    assert ("INSERT INTO conference (name, user_id, caller_id, message, profile)"
            f"VALUES('101', '{user}', '{user}', '{{}}', 'video' );") in queries
    marks = [r["data"]["mark"] for r in journal_rows(tmp_path / "journal.sqlite", service="browser", kind="mark")]
    assert "backend_invite_ok" in marks and "call_start" in marks
