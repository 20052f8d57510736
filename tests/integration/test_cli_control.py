"""``cometbench serve`` with its control plane as a user starts it: the ready line's ``control``
port, the token on stderr (random, or ``control_token`` from the config), loopback binding,
``--no-control``, and a port already in use."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.error
import urllib.request

from tests.integration.test_cli_startup import CLI, ENV, TIMEOUT, Serve


def get(port: int, path: str, token: str | None) -> tuple[int, dict | str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read().decode()
            status = answer.status
            ctype = answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        body, status, ctype = exc.read().decode(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(body) if ctype.startswith("application/json") else body


def test_serve_starts_the_control_plane_with_a_random_token():
    serve = Serve("--free-ports")
    try:
        port = serve.ready["control"]
        assert port > 0
        status, body = get(port, "/api/state", None)
        assert status == 401 and "missing token" in body["error"]
        # the control plane listens on loopback only
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        out, err = serve.stop()
    (token,) = re.findall(r"control token (\S+) \(random", err)
    assert len(token) >= 24
    assert f"dashboard http://127.0.0.1:{port}/dashboard#token={token}" in err
    assert "Traceback" not in err


def test_the_token_from_the_config_and_no_control(tmp_path):
    config = tmp_path / "cometbench.toml"
    config.write_text('control_token = "from-the-config"\n')
    serve = Serve("--free-ports", "--config", str(config))
    try:
        port = serve.ready["control"]
        status, body = get(port, "/api/state", "from-the-config")
        assert status == 200 and body["ports"]["control"] == port and body["ports"]["ws"] == serve.ready["ws"]
        status, body = get(port, "/api/state", "something-else")
        assert status == 401 and "wrong token" in body["error"]
        status, text = get(port, "/metrics", "from-the-config")
        assert status == 200 and "cometbench_comet_connections" in text
    finally:
        _, err = serve.stop()
    assert "control token from-the-config (control_token of the config)" in err
    serve = Serve("--free-ports", "--no-control")
    try:
        assert "control" not in serve.ready
    finally:
        _, err = serve.stop()
    assert "control plane off" in err


def test_a_control_port_in_use_names_the_service():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*CLI, "serve", "--free-ports", "--control-port", str(port)], capture_output=True,
                              text=True, timeout=TIMEOUT, env=ENV)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"cometbench: cannot start the control service on 127.0.0.1:{port}: port {port} "
                                  "is already in use"), done.stderr
    assert "Traceback" not in done.stderr
