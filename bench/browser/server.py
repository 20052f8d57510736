"""The bench's web server for browser actors: the demo app, users' folders, and the app backend.

A small quart-trio app under hypercorn, bound to 127.0.0.1 on a free port (``http://127.0.0.1``
is a secure context, so getUserMedia works).  Routes:

* ``/demo/<file>`` -- fixtures/demo_app/ (``/demo/jssip.js`` is the JsSIP the run chose: npm's
  2.0.6 bundle, or 3.x bundled by :mod:`bench.browser.bundle`);
* ``/app/<file>`` -- the folder of a user's app profile (``folder = ...``);
* ``/vendor/jssip-2.0.6.js``, ``/vendor/jssip-3.js`` -- both JsSIP builds;
* ``/api/auth.php?user_id&user_key`` -- what the seed's auth.php does: ``INSERT INTO users_auth``
  over CometQL (bench/clients/cometql.py through the scenario's app, :class:`bench.actors.backend.App`);
* ``/api/call.php?user_id&room[&profile][&message]`` -- what call.php does: ``INSERT INTO
  conference`` (the demo invites each user with caller_id = user_id).  The profile defaults to the
  one the story's ``join(room, profile=...)`` asked for, for pages whose call.php knows no profile.

The two backend endpoints take the same parameters as the seed's PHP scripts, so the demo page
also runs against a PHP backend (``backend`` in its config: fixtures/demo_app/backend/ under
``php -S``, tests/browser/test_php_backend.py).  The demo's page files only are served (not its
PHP).  They answer ``{"ok": true}`` or an HTTP 4xx/5xx with ``{"error": ...}``.
Requests a browser actor makes arrive with ``X-Cometbench-Actor`` (added by the actor's request
routing, bench/browser/page.py), which tells the bench whose INSERT it is, for the marks
``backend_insert_sent`` (docs/stages.md).
"""

from __future__ import annotations

import json
import logging
import mimetypes
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from bench.browser.bundle import BundleError, jssip_source
from bench.browser.profile import DEMO_DIR

__all__ = ["PageServer", "BackendHandler"]

log = logging.getLogger("cometbench.browser.server")

ACTOR_HEADER = "X-Cometbench-Actor"
DEMO_SUFFIXES = (".html", ".js", ".css", ".png", ".svg")


class BackendHandler:
    """What the endpoints do; :class:`bench.browser.participant.BrowserEnvironment` implements it."""

    async def auth(self, actor: str | None, user_id: int, user_key: str) -> None:  # pragma: no cover
        raise NotImplementedError

    async def call(self, actor: str | None, user_id: int, room: str, profile: str | None,
                   message: str) -> None:  # pragma: no cover
        raise NotImplementedError


def _safe_file(root: Path, name: str) -> Path | None:
    target = (root / name).resolve()
    try:
        target.relative_to(root.resolve())
    except ValueError:
        return None
    return target if target.is_file() else None


def _file_response(path: Path) -> Response:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        kind = "application/javascript"
    return Response(path.read_bytes(), status=200, content_type=kind, headers={"Cache-Control": "no-store"})


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})


class PageServer:
    def __init__(self, backend: BackendHandler, *, jssip: str = "2.0.6", app_folder: Path | None = None) -> None:
        self.backend = backend
        self.jssip = jssip
        self.app_folder = app_folder
        self.port = 0
        self.requests = 0
        self.app = self._make_app()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _make_app(self) -> QuartTrio:
        app = QuartTrio("cometbench_pages")
        server = self

        @app.before_request
        async def count() -> None:
            server.requests += 1

        @app.get("/demo/<path:name>")
        async def demo(name: str) -> Response:
            if name == "jssip.js":
                return await vendor_jssip(server.jssip)
            path = _safe_file(DEMO_DIR, name)
            if path is None or path.suffix not in DEMO_SUFFIXES:   # the page's files only (not backend/*.php)
                return Response("not found", status=404)
            return _file_response(path)

        @app.get("/app/<path:name>")
        async def user_app(name: str) -> Response:
            if server.app_folder is None:
                return Response("no app folder in this run's profile", status=404)
            path = _safe_file(server.app_folder, name)
            return _file_response(path) if path else Response("not found", status=404)

        @app.get("/vendor/jssip-<version>.js")
        async def vendor_jssip(version: str) -> Response:
            try:
                source = await trio.to_thread.run_sync(jssip_source, version)
            except BundleError as exc:
                return Response(f"/* {exc} */", status=404, content_type="application/javascript")
            return Response(source, status=200, content_type="application/javascript",
                            headers={"Cache-Control": "no-store"})

        @app.route("/api/auth.php", methods=["GET", "POST"])
        async def auth() -> Response:
            params = await _params()
            try:
                user_id = int(params.get("user_id", ""))
            except ValueError:
                return _json(400, {"error": "user_id must be a number"})
            key = params.get("user_key", "")
            if not key:
                return _json(400, {"error": "user_key is required"})
            try:
                await server.backend.auth(request.headers.get(ACTOR_HEADER), user_id, key)
            except Exception as exc:  # noqa: BLE001 - the page sees a failed request; the log says why
                log.warning("auth.php failed: %r", exc)
                return _json(502, {"error": f"CometQL: {exc}"})
            return _json(200, {"ok": True})

        @app.route("/api/call.php", methods=["GET", "POST"])
        async def call() -> Response:
            params = await _params()
            try:
                user_id = int(params.get("user_id", ""))
            except ValueError:
                return _json(400, {"error": "user_id must be a number"})
            room = params.get("room", "")
            if not room:
                return _json(400, {"error": "room is required"})
            try:
                await server.backend.call(request.headers.get(ACTOR_HEADER), user_id, room,
                                          params.get("profile") or None, params.get("message", "{}"))
            except Exception as exc:  # noqa: BLE001
                log.warning("call.php failed: %r", exc)
                return _json(502, {"error": f"CometQL: {exc}"})
            return _json(200, {"ok": True})

        async def _params() -> dict[str, str]:
            out = dict(request.args)
            if request.method == "POST":
                out.update(dict(await request.form))
            return out

        return app

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = log
        config.graceful_timeout = 0.5

        class _Status:
            def started(inner, binds: list[str]) -> None:
                self.port = int(binds[0].rsplit(":", 1)[1])
                task_status.started(self)

        await serve(self.app, config, task_status=_Status())  # type: ignore[arg-type]


def forward_url(server: PageServer, which: str) -> str:
    return f"{server.base}/api/{which}.php"

