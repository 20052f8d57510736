"""The control plane's HTTP API: a quart-trio app over one running stack.

Every ``/api/...`` route and ``/metrics`` need ``Authorization: Bearer <token>`` (the token printed
by ``cometbench serve`` on stderr, or ``control_token`` in the config); without it, or with a wrong
one, the answer is 401 with a JSON body.  ``/dashboard`` (a page that holds no data: it asks the
API with the token the user gives it) and ``/openapi.json`` (the API's description) need none.

Every error is JSON -- ``{"error": "<what is wrong>", "status": <code>}`` -- for a bad token (401),
an unknown route, fault, user, conference or member (404), a wrong method (405), a body or query
parameter that cannot be used (400), a fault the stack cannot do (409/501).  An unexpected error
inside a handler is a 500 with its message and is logged as one line (logger
``cometbench.control``); it never stops the emulator.  The routes and their fields are described
in ``openapi.json`` beside this module (served at ``/openapi.json``).
"""

from __future__ import annotations

import hmac
import json
import logging
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from emulator.control import views
from emulator.control.faults import FAULTS, ActionError, Actions
from emulator.control.metrics import Telemetry
from emulator.journal import COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["create_app", "openapi_document", "dashboard_page", "Control"]

LOG = logging.getLogger("cometbench.control")
PUBLIC = ("/dashboard", "/openapi.json", "/")
MAX_PAGE = 1000


def openapi_document() -> dict:
    return json.loads(files("emulator.control").joinpath("openapi.json").read_text(encoding="utf-8"))


def dashboard_page() -> str:
    return files("emulator.control").joinpath("dashboard.html").read_text(encoding="utf-8")


class Control:
    """What the app needs: the stack, the token, the telemetry tap and the fault actions."""

    def __init__(self, stack: Stack, token: str) -> None:
        if not token:
            raise ValueError("the control plane needs a token")
        self.stack = stack
        self.token = token
        self.telemetry = Telemetry()
        self.actions = Actions(stack)
        self._remove_tap = stack.journal.add_tap(self.telemetry.tap)
        self.requests = 0

    def close(self) -> None:
        self._remove_tap()


def _error(status: int, message: str, **headers: str) -> Response:
    body = json.dumps({"error": message, "status": status})
    return Response(body, status, content_type="application/json", headers=headers)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status, content_type="application/json")


class BadRequest(Exception):
    pass


def _int_arg(name: str, *, minimum: int | None = None, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise BadRequest(f"query parameter {name!r} must be at least {minimum}, got {value}")
    return value


async def _body() -> dict:
    raw = await request.get_data()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def create_app(control: Control) -> QuartTrio:
    app = QuartTrio(__name__)
    app.url_map.strict_slashes = False
    stack = control.stack

    @app.before_request
    async def authorize() -> Response | None:
        control.requests += 1
        if request.path in PUBLIC:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            return _error(401, "missing token: send the header 'Authorization: Bearer <token>' (cometbench serve "
                               "prints the token on stderr; control_token in the config sets it)",
                          **{"WWW-Authenticate": 'Bearer realm="cometbench"'})
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), control.token.encode()):
            return _error(401, "wrong token (use the one cometbench serve printed on stderr, or control_token "
                               "of the config)", **{"WWW-Authenticate": 'Bearer realm="cometbench", '
                                                                        'error="invalid_token"'})
        return None

    @app.errorhandler(BadRequest)
    async def bad_request(exc: BadRequest) -> Response:
        return _error(400, str(exc))

    @app.errorhandler(ActionError)
    async def action_error(exc: ActionError) -> Response:
        return _error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        messages = {404: f"no such endpoint: {request.method} {request.path} (GET /openapi.json lists them)",
                    405: f"{request.method} is not allowed on {request.path}"}
        return _error(exc.code or 500, messages.get(exc.code or 0, exc.description or exc.name))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        LOG.warning("control plane: %s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.route("/")
    async def root() -> Response:
        return Response("", 302, headers={"Location": "/dashboard"})

    @app.route("/dashboard")
    async def dashboard() -> Response:
        return Response(dashboard_page(), 200, content_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                            "style-src 'unsafe-inline'; img-src 'self' data:"})

    @app.route("/openapi.json")
    async def openapi() -> Response:
        return _json(openapi_document())

    @app.route("/metrics")
    async def metrics() -> Response:
        return Response(control.telemetry.exposition(stack), 200,
                        content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.route("/api/state")
    async def state() -> Response:
        return _json(views.summary(stack))

    @app.route("/api/tenants")
    async def tenants() -> Response:
        return _json(views.tenants(stack))

    @app.route("/api/tenants/<dev_id>/users")
    async def users(dev_id: str) -> Response:
        if not dev_id.isdigit():
            raise BadRequest(f"dev_id must be a number, got {dev_id!r}")
        if int(dev_id) not in stack.hub.tenants:
            return _error(404, f"no tenant with dev_id {dev_id} has been seen (GET /api/tenants lists them)")
        return _json(views.users(stack, int(dev_id)))

    @app.route("/api/connections")
    async def connections() -> Response:
        return _json(views.connections(stack, dev_id=_int_arg("dev_id", minimum=0),
                                       user_id=_int_arg("user_id", minimum=0)))

    @app.route("/api/pipes")
    async def pipes() -> Response:
        return _json(views.pipes(stack, dev_id=_int_arg("dev_id", minimum=0)))

    @app.route("/api/conferences")
    async def conferences() -> Response:
        return _json(views.conferences(stack))

    @app.route("/api/conferences/<path:name>")
    async def conference(name: str) -> Response:
        found = views.conference(stack, name)
        if found is None:
            return _error(404, f"no conference {name!r} (GET /api/conferences lists them)")
        return _json(found)

    @app.route("/api/journal")
    async def journal() -> Response:
        if not stack.journal.stored:
            return _error(409, "the journal is off (serve --no-journal); /api/journal/tail still shows recent "
                               "events")
        filters: dict[str, list] = {}
        for column in ("service", "kind", "direction"):
            values = [v for v in request.args.getlist(column) if v]
            if values:
                filters[column] = values
        for column in ("dev_id", "user_id", "conn_id"):
            value = _int_arg(column)
            if value is not None:
                filters[column] = [value]
        unknown = [k for k in request.args if k not in {*COLUMNS, "after", "limit", "run"}]
        if unknown:
            raise BadRequest(f"unknown query parameter {unknown[0]!r}; filters: service, kind, direction, dev_id, "
                             "user_id, conn_id; paging: after, limit; run")
        after = _int_arg("after", minimum=0, default=0) or 0
        limit = min(_int_arg("limit", minimum=1, default=100) or 100, MAX_PAGE)
        run = request.args.get("run") or None
        if run not in (None, "all") and run not in {r["run_id"] for r in stack.journal.runs()}:
            return _error(404, f"no journal run {run!r} (GET /api/journal/runs lists them)")
        entries = stack.journal.read(run=run, after=after, limit=limit, filters=filters)
        return _json({"run": run or stack.journal.run_id, "entries": entries,
                      "next_after": entries[-1]["seq"] if entries else after, "more": len(entries) == limit})

    @app.route("/api/journal/runs")
    async def journal_runs() -> Response:
        return _json({"current": stack.journal.run_id, "runs": stack.journal.runs()})

    @app.route("/api/journal/tail")
    async def journal_tail() -> Response:
        after = _int_arg("after", minimum=0, default=0) or 0
        limit = min(_int_arg("limit", minimum=1, default=200) or 200, MAX_PAGE)
        entries = control.telemetry.tail_after(after, limit)
        return _json({"entries": entries, "next_after": entries[-1]["seq"] if entries else after})

    @app.route("/api/faults")
    async def faults() -> Response:
        return _json({"faults": FAULTS, "history": control.actions.history[-100:]})

    @app.route("/api/faults/<name>", methods=["POST"])
    async def fault(name: str) -> Response:
        if name not in FAULTS:
            return _error(404, f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        return _json(await control.actions.apply(name, await _body()))

    @app.route("/api/reset", methods=["POST"])
    async def reset() -> Response:
        return _json(await control.actions.reset(await _body()))

    return app
