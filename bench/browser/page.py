"""One browser actor's context and page, on the Playwright thread (asyncio side).

A :class:`PageDriver` owns one browser context (its own storage, cookies, permissions: one actor
= one browser as far as the page can tell) and the page in it.  Every method is a coroutine run on
the host's loop through :meth:`bench.browser.host.BrowserHost.call`.  What it sets up before the
first load:

* the exposed binding ``__cometbench_emit`` the probe reports through; each call is handed to
  trio in order (:meth:`BrowserHost.to_trio`) with the actor's sink;
* the init scripts: the probe's configuration, then ``bench/browser/probe.js`` (the shim,
  WebSocket redirects and observation), then the app's settings (a config object such as the
  demo's ``window.cometbenchConfig``, localStorage presets such as the user id);
* request routing (:class:`Route`): a URL pattern answered from a local file (the user's own copy of
  CometServerApi.js, cometVideoApi.js or jssip.js), or forwarded to the bench's backend endpoints
  with the actor's name added (``X-Cometbench-Actor``), so the bench knows whose INSERT it is;
* dialogs: ``confirm()`` and friends are accepted at once with the ``auto`` policy (the default),
  or held until the story accepts (``manual``) -- a held confirm freezes the page's JavaScript, as
  in a real browser;
* the console, page errors and crashes, kept with wall-clock times for the run directory.

Page time: :meth:`calibrate` reads ``performance.timeOrigin + performance.now()`` several times
between two readings of trio's clock and keeps the tightest pair; the offset maps the page's
clock onto the bench's with an error of at most half that round trip (docs/stages.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["PageDriver", "Route", "Calibration", "probe_source"]


def probe_source() -> str:
    return files("bench.browser").joinpath("probe.js").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Calibration:
    origin: float        # performance.timeOrigin of the document (ms since the Unix epoch)
    offset: float        # page seconds (timeOrigin + now) minus trio seconds
    error: float         # seconds: half the round trip of the best sample
    samples: int

    def to_trio(self, origin: float, now_ms: float) -> float:
        return (origin + now_ms) / 1000.0 - self.offset


@dataclass
class Route:
    """``pattern`` (a Playwright URL glob or regex) answered from ``file``, or forwarded to
    ``forward`` (an absolute URL prefix of the bench's page server; the request's query is kept)."""

    pattern: str
    file: Path | None = None
    forward: str | None = None
    content_type: str | None = None


@dataclass
class ConsoleLine:
    wall: float
    kind: str
    text: str

    def format(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.wall)) + f".{int(self.wall * 1000) % 1000:03d}"
        return f"{stamp} {self.kind}: {self.text}"


CONTENT_TYPES = {".js": "application/javascript; charset=utf-8", ".html": "text/html; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json", ".png": "image/png",
                 ".svg": "image/svg+xml", ".wasm": "application/wasm"}


@dataclass
class PageDriver:
    host: Any                                   # BrowserHost
    actor: str
    sink: Callable[[dict], None]                # on trio's thread: every probe event
    on_dialog: Callable[[int, str, str], None]  # on trio's thread: a held dialog (id, type, message)
    on_crash: Callable[[str], None]             # on trio's thread
    probe_config: dict = field(default_factory=dict)
    init_scripts: list[str] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dialog_policy: str = "auto"                 # auto | manual
    viewport: tuple[int, int] = (800, 600)
    context: Any = None
    page: Any = None
    console: list[ConsoleLine] = field(default_factory=list)
    dialogs: dict[int, Any] = field(default_factory=dict)
    closed: bool = False
    _next_dialog: int = 0
    # dialogs being settled: the asyncio loop keeps only weak references to its tasks
    _settling: set[asyncio.Future[None]] = field(default_factory=set)

    # -- setting up -------------------------------------------------------------------------------
    async def open_context(self) -> None:
        browser = self.host.browser
        self.context = await browser.new_context(ignore_https_errors=True, viewport={
            "width": self.viewport[0], "height": self.viewport[1]})
        self.host.contexts.append(self.context)
        await self.context.expose_binding("__cometbench_emit", self._binding)
        await self.context.add_init_script(script="window.__cometbenchProbeConfig = "
                                           + json.dumps(self.probe_config) + ";")
        await self.context.add_init_script(script=probe_source())
        for script in self.init_scripts:
            await self.context.add_init_script(script=script)
        for route in self.routes:
            await self.context.route(route.pattern, self._route_handler(route))

    async def new_page(self) -> None:
        page = await self.context.new_page()
        self.page = page
        page.on("console", lambda m: self._console(f"console.{m.type}", m.text))
        page.on("pageerror", lambda e: self._console("pageerror", str(e)))
        page.on("crash", lambda *_: self._crashed())
        page.on("dialog", self._dialog)
        page.on("requestfailed", lambda r: self._console(
            "requestfailed", f"{r.method} {r.url}: {r.failure or '?'}"))
        page.on("websocket", self._websocket)

    def _websocket(self, ws: Any) -> None:
        self._console("websocket", f"open {ws.url}")
        ws.on("close", lambda *_: self._console("websocket", f"closed {ws.url}"))
        ws.on("socketerror", lambda error: self._console("websocket", f"error {ws.url}: {error}"))

    def _console(self, kind: str, text: str) -> None:
        self.console.append(ConsoleLine(time.time(), kind, text))

    def _crashed(self) -> None:
        self._console("crash", "the page crashed")
        self.host.to_trio(self.on_crash, f"the page of {self.actor} crashed")

    def _binding(self, source: Any, event: Any) -> None:
        if isinstance(event, dict):
            self.host.to_trio(self.sink, event)

    def _dialog(self, dialog: Any) -> None:
        self._console("dialog", f"{dialog.type}: {dialog.message}")
        if dialog.type != "confirm" or self.dialog_policy == "auto":
            task = asyncio.ensure_future(self._settle(dialog, True))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            return
        self._next_dialog += 1
        self.dialogs[self._next_dialog] = dialog
        self.host.to_trio(self.on_dialog, self._next_dialog, dialog.type, dialog.message)

    async def _settle(self, dialog: Any, accept: bool) -> None:
        try:
            if accept:
                await dialog.accept()
            else:
                await dialog.dismiss()
        except Exception as exc:  # noqa: BLE001 - the page went away meanwhile
            self._console("dialog", f"could not settle: {exc}")

    async def settle_dialog(self, number: int, accept: bool) -> bool:
        dialog = self.dialogs.pop(number, None)
        if dialog is None:
            return False
        await self._settle(dialog, accept)
        return True

    def _route_handler(self, route: Route):
        async def handle(r: Any, request: Any) -> None:
            try:
                if route.file is not None:
                    # a small local page file, read on the Playwright thread's own loop (not trio's)
                    body = Path(route.file).read_bytes()  # noqa: ASYNC240
                    await r.fulfill(status=200, body=body, headers={
                        "Content-Type": route.content_type or CONTENT_TYPES.get(Path(route.file).suffix,
                                                                                "application/octet-stream"),
                        "Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"})
                    return
                assert route.forward is not None   # a Route has a file or a forward
                query = request.url.partition("?")[2]
                target = route.forward + (("&" if "?" in route.forward else "?") + query if query else "")
                headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "origin")}
                headers["x-cometbench-actor"] = self.actor
                response = await r.fetch(url=target, method=request.method, headers=headers,
                                         post_data=request.post_data_buffer)
                out_headers = dict(response.headers)
                out_headers["access-control-allow-origin"] = "*"
                await r.fulfill(response=response, headers=out_headers)
            except Exception as exc:  # noqa: BLE001 - the page gets a failed request, the log says why
                self._console("route", f"{request.url}: {exc!r}")
                try:
                    await r.abort()
                except Exception:  # noqa: BLE001
                    pass
        return handle

    # -- actions --------------------------------------------------------------------------------------
    async def goto(self, url: str, timeout: float) -> None:
        await self.page.goto(url, wait_until="load", timeout=timeout * 1000)

    async def reload(self, timeout: float) -> None:
        await self.page.reload(wait_until="load", timeout=timeout * 1000)

    async def close_page(self) -> None:
        page, self.page = self.page, None
        self.dialogs.clear()
        if page is not None:
            await page.close()

    async def close(self) -> None:
        self.closed = True
        if self.context is not None:
            try:
                await self.context.close()
            finally:
                if self.context in self.host.contexts:
                    self.host.contexts.remove(self.context)

    async def click(self, selector: str, timeout: float) -> None:
        await self.page.locator(selector).first.click(timeout=timeout * 1000)

    async def fill(self, selector: str, value: str, timeout: float) -> None:
        await self.page.locator(selector).first.fill(value, timeout=timeout * 1000)

    async def wait_selector(self, selector: str, timeout: float) -> None:
        await self.page.locator(selector).first.wait_for(state="visible", timeout=timeout * 1000)

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def text(self, selector: str) -> str | None:
        locator = self.page.locator(selector)
        if await locator.count() == 0:
            return None
        return await locator.first.text_content()

    async def set_offline(self, offline: bool) -> None:
        await self.context.set_offline(offline)

    async def screenshot(self, path: str) -> None:
        await self.page.screenshot(path=path, timeout=5000)

    async def calibrate(self, clock: Any, samples: int = 7) -> Calibration:
        best = None
        for _ in range(samples):
            a = clock.current_time()
            origin, now_ms = await self.page.evaluate("[performance.timeOrigin, performance.now()]")
            b = clock.current_time()
            if best is None or b - a < best[0]:
                best = (b - a, origin, now_ms, a, b)
        round_trip, origin, now_ms, a, b = best  # type: ignore[misc]
        return Calibration(origin, (origin + now_ms) / 1000.0 - (a + b) / 2.0, round_trip / 2.0, samples)
