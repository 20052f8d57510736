"""One real Chromium for a scenario, driven by Playwright from a thread of its own.

The bench runs on trio; Playwright's Python API runs on asyncio.  :class:`BrowserHost` keeps them
apart the simple way: an asyncio event loop in one daemon thread owns Playwright, the browser and
every page; trio talks to it through two narrow doors:

* trio -> asyncio: :meth:`BrowserHost.call` schedules a coroutine on the loop
  (``asyncio.run_coroutine_threadsafe``) and waits for it on a ``trio.Event`` that the future's
  done-callback sets through the trio token -- no trio worker thread is held while a page loads,
  and a cancelled trio caller cancels the asyncio task;
* asyncio -> trio: :meth:`BrowserHost.to_trio` hands a plain function to
  ``TrioToken.run_sync_soon`` -- never blocking, in order.  Page events (the probe's binding
  calls, console lines, dialogs, crashes) arrive on the trio side this way.

The browser is Debian's ``/usr/bin/chromium`` (``executable_path``; Playwright never downloads
one), headless, with ``--no-sandbox --headless --disable-gpu --disable-background-networking
--use-fake-ui-for-media-stream --use-fake-device-for-media-stream`` and the generated camera and
microphone files (:mod:`bench.browser.media`).  Every actor gets a browser context of its own
(:mod:`bench.browser.page`), so their storage, cookies and media are apart, like separate browsers.

:meth:`BrowserHost.run` is a task of the scenario's actor nursery: it launches the browser,
reports it started, and when the nursery is cancelled closes every context, the browser and
Playwright (shielded, bounded), stops the loop, joins the thread and reaps the browser's process
group (:mod:`bench.browser.procs`): no Chromium outlives its scenario.  If the browser process
dies on its own, :meth:`run` raises :class:`BrowserCrashed` and the scenario fails with that cause.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import Callable, Coroutine
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.browser import procs

__all__ = ["BrowserHost", "BrowserError", "BrowserCrashed", "BrowserUnavailable", "CHROMIUM", "CHROMIUM_ARGS",
           "LaunchOptions"]

log = logging.getLogger("cometbench.browser")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
CLOSE_TIMEOUT = 20.0          # seconds for closing contexts, the browser and Playwright


class BrowserError(Exception):
    """A browser actor cannot do what the story asked (a page that does not load, a missing
    selector, a missing camera file ...).  The message names the actor and the cause."""


class BrowserCrashed(BrowserError):
    """The browser process (or an actor's page) died during the scenario."""


class BrowserUnavailable(BrowserError):
    """Chromium or Playwright is not installed."""


@dataclass
class LaunchOptions:
    executable: str = CHROMIUM
    camera: Path | None = None
    microphone: Path | None = None
    extra_args: tuple[str, ...] = ()
    launch_timeout: float = 30.0

    def args(self) -> list[str]:
        args = list(CHROMIUM_ARGS)
        if self.camera is not None:
            args.append(f"--use-file-for-fake-video-capture={self.camera}")
        if self.microphone is not None:
            args.append(f"--use-file-for-fake-audio-capture={self.microphone}")
        return args + list(self.extra_args)


def check_available(executable: str = CHROMIUM) -> None:
    """:class:`BrowserUnavailable` unless Chromium and Playwright can be used."""
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)) and shutil.which(executable) is None:
        raise BrowserUnavailable(f"no Chromium at {executable} (Debian: apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise BrowserUnavailable("the Python package playwright is missing: pip install 'cometbench[browser]'") \
            from None


@dataclass
class _Stats:
    launched_at: float | None = None
    launch_wall_s: float | None = None
    groups: set[int] = field(default_factory=set)
    killed: list[int] = field(default_factory=list)


class BrowserHost:
    """The Playwright thread and the browser of one scenario (see the module docstring)."""

    def __init__(self, options: LaunchOptions | None = None) -> None:
        self.options = options or LaunchOptions()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.browser: Any = None
        self._playwright: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self.clock: Any = None            # trio's clock object (read from the asyncio thread)
        self.closing = False
        self.crash: str | None = None
        self._crashed = trio.Event()
        self.stats = _Stats()
        self.contexts: list[Any] = []     # live contexts (bench.browser.page.PageDriver adds them)
        self._before: set[int] | None = None

    # -- the two doors ----------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, timeout: float | None = None,
                   what: str = "") -> Any:
        """Run ``await fn(*args)`` on the asyncio loop and return its result (its exception is
        raised here).  ``timeout``: :class:`BrowserError` naming ``what`` when it takes longer."""
        if self.loop is None or self.loop.is_closed():
            raise BrowserError(f"{what or 'a browser call'}: the browser is not running"
                               + (f" ({self.crash})" if self.crash else ""))
        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        done = trio.Event()
        token = self._token

        def wake(_future: Any) -> None:
            try:
                token.run_sync_soon(done.set)  # type: ignore[union-attr]
            except trio.RunFinishedError:
                pass

        future.add_done_callback(wake)
        try:
            with trio.fail_after(timeout) if timeout is not None else nullcontext():
                await done.wait()
        except trio.TooSlowError:
            future.cancel()
            raise BrowserError(f"{what or 'a browser call'} took more than {timeout:g} s") from None
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def to_trio(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the asyncio thread: run ``fn(*args)`` on trio's thread soon (in order)."""
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    # -- lifecycle ------------------------------------------------------------------------------------
    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Launch; report started; on cancellation close everything.  Raises :class:`BrowserCrashed`
        when the browser dies on its own."""
        self._token = trio.lowlevel.current_trio_token()
        self.clock = trio.lowlevel.current_clock()
        check_available(self.options.executable)
        # a missing camera or microphone file is not refused here: the page loads (a screenshot can
        # show it) and the actor fails with the cause when it opens (bench.browser.participant)
        self._thread = threading.Thread(target=self._thread_main, name="cometbench-browser", daemon=True)
        self._thread.start()
        self._before = procs.chromium_groups()
        try:
            await trio.to_thread.run_sync(self._ready.wait, 10.0)
            before = self._before
            t0 = trio.current_time()
            await self.call(self._launch, timeout=self.options.launch_timeout + 5, what="launching Chromium")
            self.stats.launched_at = trio.current_time()
            self.stats.launch_wall_s = self.stats.launched_at - t0
            self.stats.groups = procs.chromium_groups() - before
            procs.LAUNCHED.extend(sorted(self.stats.groups))
            task_status.started(self)
            await self._crashed.wait()
            raise BrowserCrashed(f"the browser crashed: {self.crash}")
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown()

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self.browser = await self._playwright.chromium.launch(
            executable_path=self.options.executable, headless=True, args=self.options.args(),
            timeout=self.options.launch_timeout * 1000)
        self.browser.on("disconnected", lambda *_: self._disconnected())

    def _disconnected(self) -> None:
        if self.closing:
            return
        self.to_trio(self.mark_crashed, "the browser process exited (disconnected)")

    def mark_crashed(self, why: str) -> None:
        """On trio's thread: the browser (or a page) is gone."""
        if self.crash is None:
            self.crash = why
        self._crashed.set()

    async def _shutdown(self) -> None:
        self.closing = True
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self.call(self._close_all, what="closing the browser")
                except Exception as exc:  # noqa: BLE001 - a dead browser closes with errors
                    log.debug("closing the browser: %r", exc)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            await trio.to_thread.run_sync(self._thread.join, 10.0)
        if not self.stats.groups and self._before is not None:   # a launch that failed half-way
            self.stats.groups = procs.chromium_groups() - self._before
            procs.LAUNCHED.extend(sorted(self.stats.groups))
        for group in sorted(self.stats.groups):
            self.stats.killed += await trio.to_thread.run_sync(procs.reap_group, group)
        if self.stats.killed:
            log.warning("killed %d Chromium processes that outlived browser.close(): %s", len(self.stats.killed),
                        self.stats.killed)

    async def _close_all(self) -> None:
        for context in list(self.contexts):
            try:
                await asyncio.wait_for(context.close(), 5)
            except Exception:  # noqa: BLE001
                pass
        self.contexts.clear()
        if self.browser is not None:
            try:
                await asyncio.wait_for(self.browser.close(), 10)
            except Exception:  # noqa: BLE001
                pass
        if self._playwright is not None:
            try:
                await asyncio.wait_for(self._playwright.stop(), 10)
            except Exception:  # noqa: BLE001
                pass

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- for the tests ---------------------------------------------------------------------------------
    def live_processes(self) -> list[procs.Proc]:
        """Processes of this host's browser group(s) still running."""
        table = procs.processes()
        return [p for group in self.stats.groups for p in procs.live_in_group(group, table)]

    def missing_media(self) -> list[str]:
        """The configured fake media files that do not exist (a clear cause for a failed getUserMedia)."""
        return [f"the fake {what} file {path} does not exist (the defaults are generated by "
                f"`python -m bench.browser.media`; give an existing file)"
                for path, what in ((self.options.camera, "camera"), (self.options.microphone, "microphone"))
                if path is not None and not Path(path).is_file()]

    def browser_pid(self) -> int | None:
        return min(self.stats.groups) if self.stats.groups else None
