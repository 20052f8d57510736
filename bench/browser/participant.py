"""A browser actor: a real Chromium page in place of a virtual participant, with the same interface.

:class:`BrowserParticipant` is a :class:`~bench.actors.participant.Participant` whose page is a
real one: the scenario API (``bench/scenario``) drives it with the same calls -- ``open_page``,
``join``, ``refresh``, ``hangup``, ``mute_audio`` ... -- and hears the same things: marks, app
callbacks under their JavaScript names, callPipe events (``received.<event>``), page events.  A
story does not know which of its actors are browsers.

How each action reaches the page (the app profile, :mod:`bench.browser.profile`, names the
controls):

* ``open_page`` -- the page loads in the actor's own browser context; the bench waits for the
  page's comet login (``serverInfo``, seen by the probe) and for the profile's ``ready`` selector;
* ``join(room, profile=...)`` -- fills the room and profile inputs and clicks Join; the page's
  own request to call.php reaches the bench's backend endpoint, which INSERTs over CometQL
  (``restoring`` joins -- the app-level restore -- are the app's server-side INSERT, as for a
  virtual actor);
* ``refresh()`` -- ``page.reload()``: a real reload; ``close_tab()`` -- the page closes;
* ``hangup()`` / ``mute_audio(x)`` / ``mute_video(x)`` -- the buttons (a mute button is clicked
  only when the page's mute state differs from ``x``); ``hold()`` / ``resume()`` --
  ``cometVideoApi.toggleHold()``; ``accept()`` -- accepts the held ``confirm()`` (accept policy
  ``manual``), or the profile's Accept button;
* ``go_offline()`` / ``go_online()`` -- Chromium's offline emulation for the actor's context
  (``navigator.onLine`` turns false, new connections fail); link faults on the actor's relays
  (``s.link(actor)``) cut the connections that exist;
* the synchronous actions are queued and run in order on one task of the actor.

What the page reports (bench/browser/probe.js) becomes the same marks as a virtual actor's
(docs/stages.md), stamped with the page's own clock mapped onto the bench's (each page load is
calibrated, :meth:`bench.browser.page.PageDriver.calibrate`), and recorded in the journal with
service ``browser``.  ``first_remote_frame`` is the first decoded remote video frame when the page
has one (``requestVideoFrameCallback``); with the fake FreeSWITCH's default media model there is no
media (ICE never completes), so it falls back to the virtual actors' rule: ``max(video_attached,
media_flowing)``.  With ``media = "real"`` (emulator/freeswitch/real_media.py) the page's ICE really
connects: ``ice_connected``, ``dtls_connected`` and ``first_remote_frame`` are the page's own, and the
page reports its received media every 500 ms (``media_stats``: frames decoded, freezes, fps, audio
energy); Chromium then runs with ``--allow-loopback-in-peer-connection`` (:func:`media_args`).

Things a Python option cannot do in a page: ``callbacks`` (Python functions) are ignored; the
demo app defines every callback itself.  ``quirks`` and ``bandwidth`` go to the demo app's
settings; ``timings`` and ``tab_election`` are the real browser's own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.actors.backend import demo_hash
from bench.actors.participant import JS_CALLBACKS, Join, Participant
from bench.browser.host import CHROMIUM, BrowserError, BrowserHost, LaunchOptions
from bench.browser.page import Calibration, PageDriver, Route
from bench.browser.profile import AppProfile, demo_profile, fill, fill_deep
from bench.browser.relay import Relay
from bench.browser.server import BackendHandler, PageServer

__all__ = ["BrowserSettings", "BrowserEnvironment", "BrowserParticipant", "PageCall", "PageVideo", "PageComet",
           "BrowserPage", "glob_to_regex"]

log = logging.getLogger("cometbench.browser")

PY_CALLBACKS = {js: py for py, js in JS_CALLBACKS.items()}
ACTION_TIMEOUT = 20.0


@dataclass
class BrowserSettings:
    """Which actors are real browsers in a run, and how (``cometbench run --browser ACTOR ...``)."""

    actors: tuple[str, ...] = ()
    app: AppProfile = field(default_factory=demo_profile)
    shim: bool | None = None                 # None: the app profile's setting
    camera: Path | None = None               # None: the generated fixture
    microphone: Path | None = None
    relay: bool = True                       # the page's connections pass per-actor relays (link faults)
    executable: str = CHROMIUM
    artifacts_dir: Path | None = None        # screenshots and console logs (the runner sets it per scenario)

    def __post_init__(self) -> None:
        self.actors = tuple(self.actors)


#: Chromium offers no 127.0.0.1 ICE candidate without this flag; the real media endpoint listens there.
LOOPBACK_MEDIA_ARG = "--allow-loopback-in-peer-connection"


def media_args(stack: Any) -> tuple[str, ...]:
    """Chromium flags for the stack's media: with ``media = "real"`` the page's ICE must reach the media
    worker on 127.0.0.1 (emulator/freeswitch/real_media.py)."""
    config = getattr(stack, "config", None)
    return (LOOPBACK_MEDIA_ARG,) if getattr(config, "media", "model") == "real" else ()


def trust_args(stack: Any) -> tuple[str, ...]:
    """Chromium flags that make it trust the emulator's SIP certificate (its public key's SHA-256,
    ``--ignore-certificate-errors-spki-list``): without them Chromium aborts the first TLS handshake
    (certificate unknown) and connects again under the context's ``ignore_https_errors``, which
    costs the SIP transport stage an extra round of connect and handshake."""
    certificates = getattr(stack, "certificates", None)
    if certificates is None:
        return ()
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(Path(certificates.server_cert).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return (f"--ignore-certificate-errors-spki-list={base64.b64encode(hashlib.sha256(spki).digest()).decode()}",)


def glob_to_regex(pattern: str) -> str:
    """A Playwright URL glob (``**`` any characters, ``*`` no slash, ``?`` one) as a JS regex string."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


# =====================================================================================================
# the mirror of a page
# =====================================================================================================
@dataclass(eq=False)
class PageCall:
    """One ``msg.sys_sipCall`` the page received (the bench's mirror of a ``_callPipes`` entry)."""

    pipe: str
    sys: dict
    message: Any
    received_at: float
    is_accept: bool = False
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def call_key(self) -> str:
        return str(self.sys.get("callKey", ""))

    @property
    def room(self) -> str:
        return str(self.sys.get("conference_name", ""))


class PageVideo:
    """What the story reads of the page's ``cometVideoApi`` (``actor.video``), from the probe's reports."""

    def __init__(self, participant: BrowserParticipant) -> None:
        self._p = participant
        self.calls: dict[str, PageCall] = {}
        self.last: PageCall | None = None
        self.in_call = False
        self.active_pipe: str | None = None
        self.mute: dict | None = None
        self.hold = False
        self.callbacks: list[tuple[float, str, dict]] = []
        self.received: list[tuple[float, dict]] = []
        self.ice: list[tuple[float, str]] = []
        self.remote_frames: list[tuple[float, dict]] = []
        #: real media: the page's received media every 500 ms (inbound video frames/freezes/fps, audio energy)
        self.media_stats: list[tuple[float, dict]] = []
        self.gum: list[tuple[float, bool, str | None]] = []
        self.page_errors: list[tuple[float, str]] = []

    @property
    def active(self) -> PageCall | None:
        return self.calls.get(self.active_pipe) if self.active_pipe else None

    def is_in_call(self) -> bool:
        return self.in_call

    def is_mute(self) -> dict | None:
        return dict(self.mute) if self.mute is not None else None

    def hangup(self) -> None:
        self._p.hangup()

    def mute_audio(self, mute: bool) -> bool | None:
        return self._p.mute_audio(mute)

    def mute_video(self, mute: bool) -> bool | None:
        return self._p.mute_video(mute)

    def accept_call(self, type: str = "video") -> bool:
        return self._p.accept()

    def toggle_hold(self) -> None:
        self._p._enqueue(self._p._do_toggle_hold, "toggleHold")


class PageComet:
    """What the story reads of the page's comet client (``actor.comet``)."""

    def __init__(self) -> None:
        self.authorized: bool | None = None
        self.server_infos: list[tuple[float, bool]] = []
        self.connected = False
        self.opens = 0
        self.closes: list[tuple[float, int, bool]] = []
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_server_info(self, count: int = 1, timeout: float | None = 10.0) -> bool:
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while len(self.server_infos) < count:
                await self._changed.wait()
        return self.server_infos[count - 1][1]


@dataclass(eq=False)
class BrowserPage:
    number: int
    url: str
    video: PageVideo
    comet: PageComet
    opened_at: float
    origin: float | None = None                   # performance.timeOrigin of its document
    calibration: Calibration | None = None
    closed_at: float | None = None
    sip: dict[int, dict[str, bool]] = field(default_factory=dict)


# =====================================================================================================
# one scenario's browser, web server and backend
# =====================================================================================================
class BrowserEnvironment(BackendHandler):
    """The browser side of one scenario: the Chromium host, the page server, the actors' registry."""

    def __init__(self, settings: BrowserSettings, *, scenario: str, nursery: trio.Nursery, network: Any,
                 stack: Any, app: Any) -> None:
        self.settings = settings
        self.scenario = scenario
        self.nursery = nursery
        self.network = network
        self.stack = stack
        self.app = app
        self.host: BrowserHost | None = None
        self.server: PageServer | None = None
        self.participants: dict[str, BrowserParticipant] = {}
        self._lock = trio.Lock()
        self.artifacts: list[Path] = []

    @property
    def profile(self) -> AppProfile:
        return self.settings.app

    @property
    def real_media(self) -> bool:
        """The stack's FreeSWITCH has a real media endpoint (``media = "real"``): pages really decode video."""
        return bool(media_args(self.stack))

    @property
    def shim(self) -> bool:
        return self.profile.shim if self.settings.shim is None else self.settings.shim

    async def ensure_started(self) -> None:
        async with self._lock:
            if self.host is not None:
                return
            from bench.browser.media import fake_media

            camera, microphone = self.settings.camera, self.settings.microphone
            if camera is None or microphone is None:
                media = await trio.to_thread.run_sync(fake_media)
                camera = camera or media.camera
                microphone = microphone or media.microphone
            host = BrowserHost(LaunchOptions(executable=self.settings.executable, camera=camera,
                                             microphone=microphone,
                                             extra_args=trust_args(self.stack) + media_args(self.stack)))
            self.server = await self.nursery.start(PageServer(self, jssip=self.profile.jssip,
                                                              app_folder=None if self.profile.is_demo
                                                              else self.profile.folder).run)
            await self.nursery.start(self._watch_host, host)
            self.host = host

    async def _watch_host(self, host: BrowserHost, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await host.run(task_status=task_status)
        except BrowserError as exc:
            self.save_logs(failed=True, reason=str(exc))
            raise

    # -- the backend endpoints (bench/browser/server.py) ------------------------------------------------
    async def auth(self, actor: str | None, user_id: int, user_key: str) -> None:
        participant = self.participants.get(actor or "")
        app = participant.app if participant is not None else self.app
        await app.authorize(user_id, user_key)
        if participant is not None and participant.user_id == user_id:
            participant.user_key = user_key

    async def call(self, actor: str | None, user_id: int, room: str, profile: str | None, message: str) -> None:
        participant = self.participants.get(actor or "")
        app = participant.app if participant is not None else self.app
        if participant is None:
            await app.invite(room, user_id, profile=profile or "video", message=message)
            return
        intent = participant.intent
        if profile is None:
            profile = intent[1] if intent is not None and intent[0] == room else "video"
        await app.invite(room, user_id, profile=profile, message=message,
                         on_sent=lambda: participant._mark("backend_insert_sent", room=room))

    # -- artefacts -----------------------------------------------------------------------------------
    def artifact_dir(self) -> Path | None:
        base = self.settings.artifacts_dir
        if base is None:
            return None
        base.mkdir(parents=True, exist_ok=True)
        return base

    def save_logs(self, *, failed: bool, reason: str = "") -> list[Path]:
        """Every browser actor's console log (and the cause, when failed); no screenshots (sync)."""
        folder = self.artifact_dir()
        if folder is None:
            return []
        written = []
        for participant in self.participants.values():
            written.append(participant.write_console(folder))
        if failed and reason:
            path = folder / "failure.txt"
            path.write_text(reason + "\n", encoding="utf-8")
            written.append(path)
        self.artifacts += written
        return written

    async def flush(self) -> None:
        for participant in list(self.participants.values()):
            await participant.flush()

    async def finish(self, *, failed: bool) -> None:
        """The scenario ends: console logs always, screenshots when it failed."""
        if failed:
            for participant in self.participants.values():
                await participant.screenshot()
        self.save_logs(failed=False)


# =====================================================================================================
# the actor
# =====================================================================================================
class BrowserParticipant(Participant):
    """A participant whose page is a real Chromium page (see the module docstring)."""

    kind = "browser"

    def __init__(self, target: Any, network: Any, *, env: BrowserEnvironment, **kwargs: Any) -> None:
        self.python_callbacks = kwargs.pop("callbacks", None) or {}
        self._media_paths: set[str] = set()          # SIP Call-IDs whose peer connection is up (link table)
        super().__init__(target, network, **kwargs)
        self.env = env
        self.profile = env.profile
        self.driver: PageDriver | None = None
        self.page: BrowserPage | None = None          # type: ignore[assignment]
        self.pages: list[BrowserPage] = []             # type: ignore[assignment]
        self.user_key = demo_hash(self.user_id)
        self.intent: tuple[str, str, str] | None = None
        self.relays: dict[str, Relay] = {}
        self._calibrations: dict[float, tuple[BrowserPage, Calibration]] = {}
        self._waiting: dict[float, list[dict]] = {}
        self._actions_send, self._actions_receive = trio.open_memory_channel[Any](1000)
        self._held_dialogs: list[int] = []
        self._bench_hangups: list[float] = []     # hangups the story pressed (their page reports are not re-marked)
        self._scheduled_join = False
        self.failures: list[str] = []
        env.participants[self.actor] = self

    # -- identity and the page mirror ---------------------------------------------------------------
    @property
    def video(self) -> PageVideo:  # type: ignore[override]
        if self.page is None:
            raise RuntimeError(f"{self.actor} has no open page")
        return self.page.video

    @property
    def comet(self) -> PageComet:  # type: ignore[override]
        if self.page is None:
            raise RuntimeError(f"{self.actor} has no open page")
        return self.page.comet

    @property
    def host(self) -> BrowserHost:
        assert self.env.host is not None
        return self.env.host

    # -- page lifecycle ------------------------------------------------------------------------------
    async def open_page(self, *, wait_auth: bool = True, timeout: float | None = 30.0) -> BrowserPage:  # type: ignore[override]
        if self.page is not None:
            raise RuntimeError(f"{self.actor} already has an open page (use refresh())")
        await self.env.ensure_started()
        if self.driver is None:
            await self._open_context()
        assert self.driver is not None     # _open_context made it
        await self.host.call(self.driver.new_page, what=f"{self.actor}: opening a tab", timeout=ACTION_TIMEOUT)
        return await self._load(reload=False, wait_auth=wait_auth, timeout=timeout)

    async def refresh(self, *, wait_auth: bool = True) -> BrowserPage:  # type: ignore[override]
        """A real reload (``page.reload()``): the page's WebSockets close as the browser closes them on
        navigation, its state is gone, the new document loads and logs in again."""
        self._mark_event("page_refresh")
        if self.page is None or self.driver is None or self.driver.page is None:
            self._close_page()
            return await self.open_page(wait_auth=wait_auth)
        self._close_page()
        return await self._load(reload=True, wait_auth=wait_auth, timeout=30.0)

    async def _load(self, *, reload: bool, wait_auth: bool, timeout: float | None) -> BrowserPage:
        assert self.driver is not None
        url = self._page_url()
        page = BrowserPage(len(self.pages) + 1, url, PageVideo(self), PageComet(), trio.current_time())
        self.pages.append(page)
        self.page = page
        load_timeout = self.profile.load_timeout
        try:
            if reload:
                await self.host.call(self.driver.reload, load_timeout, timeout=load_timeout + 5,
                                     what=f"{self.actor}: reloading {url}")
            else:
                await self.host.call(self.driver.goto, url, load_timeout, timeout=load_timeout + 5,
                                     what=f"{self.actor}: loading {url}")
        except Exception as exc:  # noqa: BLE001 - Playwright's own errors say what went wrong
            await self._fail(f"the page {url} did not load within {load_timeout:g} s: {_first_line(exc)}")
        calibration = await self.host.call(self.driver.calibrate, self.host.clock, timeout=ACTION_TIMEOUT,
                                           what=f"{self.actor}: reading the page clock")
        self._calibrated(page, calibration)
        missing = self.host.missing_media()
        if missing:
            await self._fail("; ".join(missing))
        if wait_auth:
            wait = timeout if timeout is not None else 30.0
            with trio.move_on_after(wait):
                await page.comet.wait_server_info(timeout=None)
            if not page.comet.server_infos:
                await self._fail(f"the page {url} did not log in to the comet server within {wait:g} s "
                                 f"(no serverInfo frame)")
            if self.profile.ready:
                try:
                    await self.host.call(self.driver.wait_selector, self.profile.ready, self.profile.selector_timeout,
                                         timeout=self.profile.selector_timeout + 5, what=f"{self.actor}: ready")
                except Exception as exc:  # noqa: BLE001
                    await self._fail(f"the page never showed it was ready: selector {self.profile.ready!r} "
                                     f"not visible within {self.profile.selector_timeout:g} s ({_first_line(exc)})")
        if self.app.restore and self.app.rooms_of(self.user_id):
            self._nursery.start_soon(self.app.restore_on_page_load, self)
        return page

    def _close_page(self) -> None:
        self._close_all_media()                          # the page's peer connections go with it
        page = self.page
        if page is None:
            return
        self.page = None
        page.closed_at = trio.current_time()

    def close_tab(self) -> None:
        if self.page is not None:
            self._mark_event("tab_closed")
        self._close_page()
        self._enqueue(self._do_close_tab, "close the tab")

    def go_offline(self) -> None:
        """Chromium's offline emulation for this actor's context: navigator.onLine turns false (the
        comet client stops reconnecting), and the context's new requests and sockets fail."""
        self._mark_event("offline")
        self._enqueue(self._do_offline, "go offline", True)

    def go_online(self) -> None:
        self._mark_event("online")
        self._enqueue(self._do_offline, "go online", False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_page()
        self._actions_send.close()
        if self._media_observer_remove is not None:
            self._media_observer_remove()
            self._media_observer_remove = None

    # -- call operations --------------------------------------------------------------------------------
    async def join(self, room: str, *, profile: str = "video", message: str = "{}", restoring: bool = False,
                   at: float | None = None) -> None:
        """Click Join (after filling the room and profile inputs); returns when the page has the
        answer of its call request.  A ``restoring`` join is the app's own re-INSERT."""
        if restoring or not self.profile.selectors.join:
            await super().join(room, profile=profile, message=message, restoring=restoring, at=at)
            return
        if self.page is None:
            raise BrowserError(f"{self.actor}: join({room!r}) with no open page")
        await self._run(self._do_fill, f"join {room}", str(room), profile)   # typed before the click is due
        if at is not None and at > trio.current_time():
            await trio.sleep_until(at)
        started = trio.current_time() if at is None else at
        join = Join(str(room), started)
        self.joins.append(join)
        self.current = join
        self.intent = (str(room), profile, message)
        self._scheduled_join = at is not None
        if at is not None:              # a schedule: the click counts from when it was due (no omission)
            self._mark("backend_invite_start", room=room, at=started)
        await self._run(self._click, f"join {room}", self.profile.selectors.join, "join")
        await self.flush()                              # the page's report of the click, if it made one
        if "backend_invite_start" not in join.marks:    # it did not (a selector that is not CSS)
            self._mark("backend_invite_start", room=room, at=started, page_click=False)
        if not (self.profile.is_demo or self.profile.backend_call):
            return                                  # no way to see the page's call request: done at the click
        with trio.move_on_after(self.profile.load_timeout):
            await self.wait_mark("backend_invite_ok", timeout=None)
        if "backend_invite_ok" not in join.marks:
            await self._fail(f"clicked Join, but the page's call request did not complete within "
                             f"{self.profile.load_timeout:g} s")

    def accept(self) -> bool:
        """Accept the ringing call: the held confirm(), else the profile's Accept button."""
        if self.page is None:
            raise RuntimeError(f"{self.actor} has no open page")
        self._enqueue(self._do_accept, "accept")
        return bool(self._held_dialogs) or bool(self.profile.selectors.accept) or self.page.video.last is not None

    def hangup(self) -> None:
        """The Hang up button.  The ``hangup`` mark is the moment the story presses it (a window
        ``s.after("patient.hangup")`` must open before the effects others see: the peer's onOut can
        reach the bench sooner than the page's own report); the page's report of it is then not
        recorded a second time."""
        if self.page is not None:
            video = self.page.video
            self._bench_hangups.append(trio.current_time())
            self._observe("hangup", video.active or video.last, {})
            self._enqueue(self._do_hangup, "hangup")

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        """Run a JavaScript function expression in the actor's page and return its JSON result (for
        checks a story cannot make through the actor's state: ``await patient.evaluate("() =>
        cometVideoApi.isInCall()")``).  In order with the actor's queued actions."""
        return await self._run(self._eval, "evaluate", expression, arg)

    async def flush(self) -> None:
        """Wait until every report the page has sent so far is on the bench's timeline (an evaluate
        round trip: the page's earlier binding calls are delivered before its answer)."""
        if self.page is None or self.driver is None or self.driver.page is None or self.env.host is None:
            return
        with trio.move_on_after(5):
            try:
                await self._eval("() => 0", what="flush")
            except Exception:  # noqa: BLE001 - a page that is going away has nothing more to say
                pass

    def mute_audio(self, mute: bool = True) -> bool | None:
        self._enqueue(self._do_mute, "mute audio", "audio", bool(mute))
        return True

    def mute_video(self, mute: bool = True) -> bool | None:
        self._enqueue(self._do_mute, "mute video", "video", bool(mute))
        return True

    def is_on_hold(self) -> bool:
        return self.page is not None and self.page.video.hold

    def hold(self) -> None:
        if not self.is_on_hold():
            self._enqueue(self._do_toggle_hold, "hold")

    def resume(self) -> None:
        if self.is_on_hold():
            self._enqueue(self._do_toggle_hold, "resume")

    # -- the actions, run in order on the actor's task ---------------------------------------------------
    def _enqueue(self, fn: Callable[..., Awaitable[Any]], what: str, *args: Any) -> None:
        try:
            self._actions_send.send_nowait((fn, what, args, None))
        except (trio.ClosedResourceError, trio.WouldBlock):
            pass

    async def _run(self, fn: Callable[..., Awaitable[Any]], what: str, *args: Any) -> Any:
        """An action the story awaits: in order after the queued ones; its error is raised here."""
        done: list[Any] = []
        event = trio.Event()
        await self._actions_send.send((fn, what, args, (event, done)))
        await event.wait()
        if done and isinstance(done[0], BaseException):
            raise done[0]
        return done[0] if done else None

    async def _action_worker(self) -> None:
        async for fn, what, args, waiter in self._actions_receive:
            try:
                result = await fn(*args)
            except Exception as exc:
                if waiter is not None:
                    waiter[1].append(exc)
                    waiter[0].set()
                    continue
                if isinstance(exc, BrowserError):
                    raise
                await self._fail(f"{what}: {_first_line(exc)}")
            else:
                if waiter is not None:
                    waiter[1].append(result)
                    waiter[0].set()

    async def _click(self, selector: str, what: str) -> None:
        assert self.driver is not None
        timeout = self.profile.selector_timeout
        try:
            await self.host.call(self.driver.click, selector, timeout, timeout=timeout + 5,
                                 what=f"{self.actor}: {what}")
        except Exception as exc:  # noqa: BLE001
            await self._fail(f"{what}: the control {selector!r} was not found or could not be clicked within "
                             f"{timeout:g} s ({_first_line(exc)})")

    async def _eval(self, expression: str, arg: Any = None, what: str = "evaluate") -> Any:
        assert self.driver is not None
        return await self.host.call(self.driver.evaluate, expression, arg, timeout=ACTION_TIMEOUT,
                                    what=f"{self.actor}: {what}")

    async def _do_fill(self, room: str, profile: str) -> None:
        """Type the room and the profile into the page's inputs (when the profile names them)."""
        sel = self.profile.selectors
        assert self.driver is not None
        for selector, value, what in ((sel.room, room, "the room input"), (sel.profile, profile, "the profile input")):
            if selector:
                try:
                    await self.host.call(self.driver.fill, selector, value, self.profile.selector_timeout,
                                         timeout=self.profile.selector_timeout + 5, what=f"{self.actor}: {what}")
                except Exception as exc:  # noqa: BLE001
                    await self._fail(f"join: {what} {selector!r} was not found within "
                                     f"{self.profile.selector_timeout:g} s ({_first_line(exc)})")

    async def _do_hangup(self) -> None:
        if self.profile.selectors.hangup:
            await self._click(self.profile.selectors.hangup, "hangup")
        else:
            await self._eval("() => window.cometVideoApi.hangup()", what="hangup")

    async def _do_mute(self, kind: str, mute: bool) -> None:
        state = await self._eval(
            "() => { const api = window.cometVideoApi; const m = api && api.isMute && api.isMute();"
            " return m ? {audio: !!m.audio, video: !!m.video} : null; }", what=f"mute {kind}")
        if state is None:
            return                                    # no SIP session yet: the real API does nothing
        selector = self.profile.selectors.mute_audio if kind == "audio" else self.profile.selectors.mute_video
        if selector:
            if state[kind] != mute:
                await self._click(selector, f"mute {kind}")
        else:
            method = "muteAudio" if kind == "audio" else "muteVideo"
            await self._eval(f"(m) => window.cometVideoApi.{method}(m)", mute, what=f"mute {kind}")

    async def _do_toggle_hold(self) -> None:
        await self._eval("() => window.cometVideoApi.toggleHold()", what="toggleHold")

    async def _do_accept(self) -> None:
        assert self.driver is not None
        while self._held_dialogs:
            number = self._held_dialogs.pop(0)
            if await self.host.call(self.driver.settle_dialog, number, True, timeout=ACTION_TIMEOUT,
                                    what=f"{self.actor}: accept"):
                return
        if self.profile.selectors.accept:
            await self._click(self.profile.selectors.accept, "accept")
        else:
            await self._eval("() => window.demoApp ? window.demoApp.accept() : "
                             "window.cometVideoApi.acceptCall({type: 'video'})", what="accept")

    async def _do_close_tab(self) -> None:
        assert self.driver is not None
        await self.host.call(self.driver.close_page, timeout=ACTION_TIMEOUT, what=f"{self.actor}: close the tab")

    async def _do_offline(self, offline: bool) -> None:
        assert self.driver is not None
        await self.host.call(self.driver.set_offline, offline, timeout=ACTION_TIMEOUT,
                             what=f"{self.actor}: set offline {offline}")

    # -- setting the context up -------------------------------------------------------------------------
    async def _open_context(self) -> None:
        env = self.env
        stack = env.stack
        config = stack.config
        comet_to = f"ws://{self.target.ws_host}:{self.target.ws_port}"
        sip_host = config.sip_public_host or config.host
        sip_port = config.sip_public_port or stack.ports["sip_ws"]
        sip_scheme = "wss" if config.sip_tls else "ws"
        sip_to = f"{sip_scheme}://{sip_host}:{sip_port}"
        if env.settings.relay:
            comet = Relay(self.network, self.target.ws_host, self.target.ws_port, self.actor, "comet")
            sip = Relay(self.network, config.host, stack.ports["sip_ws"], self.actor, "sip")
            comet_to = f"ws://127.0.0.1:{await self._nursery.start(comet.run)}"
            sip_local = await self._nursery.start(sip.run)
            self.relays = {"comet": comet, "sip": sip}
            sip_rewrite = [[sip_to, f"{sip_scheme}://127.0.0.1:{sip_local}"]]
        else:
            sip_rewrite = []
        values = {"user_id": self.user_id, "user_key": self.user_key, "dev_id": self.target.dev_id,
                  "room": "", "actor": self.actor, "node": comet_to.split("://", 1)[1]}
        probe_config: dict[str, Any] = {"shim": env.shim, "wsRewrite": list(sip_rewrite),
                                        "joinSelector": self.profile.selectors.join}
        init_scripts: list[str] = []
        routes: list[Route] = []
        server = env.server
        assert server is not None
        if self.profile.is_demo:
            backend = self.profile.demo_backend or "/api/"
            demo: dict[str, Any] = {"node": values["node"], "devId": self.target.dev_id, "userId": str(self.user_id),
                    "userKey": self.user_key, "backend": backend, "confirm": True, "legacy": self.profile.legacy,
                    "quirks": dict(self.quirks.states), "callType": self.call_type, "iceServers": []}
            if self.bandwidth is not None:
                demo["bandwidth"] = {"video": self.bandwidth[0], "audio": self.bandwidth[1]}
            init_scripts.append("window.cometbenchConfig = " + json.dumps(demo) + ";")
            probe_config["callUrl"] = re.escape(backend) + r"call\.php"
            probe_config["authUrl"] = re.escape(backend) + r"auth\.php"
            if not self.profile.demo_backend:     # the bench's endpoints, told whose request it is
                demo["backendHeaders"] = {"X-Cometbench-Actor": self.actor}
            init_scripts[-1] = "window.cometbenchConfig = " + json.dumps(demo) + ";"
        else:
            profile = self.profile
            for node in profile.comet_nodes:
                probe_config["wsRewrite"] += [[f"ws://{node}", comet_to], [f"wss://{node}", comet_to]]
            if profile.user_storage_key:
                init_scripts.append(f"try {{ localStorage.setItem({json.dumps(profile.user_storage_key)}, "
                                    f"{json.dumps(str(self.user_id))}); }} catch (e) {{}}")
            if profile.config_global:
                init_scripts.append(f"window[{json.dumps(profile.config_global)}] = "
                                    + json.dumps(fill_deep(profile.config, values)) + ";")
            for pattern, file in profile.scripts.items():
                routes.append(Route(pattern, file=file))
            if profile.backend_auth:
                routes.append(Route(profile.backend_auth, forward=f"{server.base}/api/auth.php"))
                probe_config["authUrl"] = glob_to_regex(profile.backend_auth)
            if profile.backend_call:
                routes.append(Route(profile.backend_call, forward=f"{server.base}/api/call.php"))
                probe_config["callUrl"] = glob_to_regex(profile.backend_call)
        self._values = values
        policy = "auto" if self.accept_policy == "auto" and self.decision_delay == 0 else "manual"
        self.driver = PageDriver(self.host, self.actor, sink=self._on_page_event, on_dialog=self._on_dialog,
                                 on_crash=self._on_crash, probe_config=probe_config, init_scripts=init_scripts,
                                 routes=routes, dialog_policy=policy)
        await self.host.call(self.driver.open_context, timeout=ACTION_TIMEOUT, what=f"{self.actor}: a browser context")
        self._nursery.start_soon(self._action_worker)

    def _page_url(self) -> str:
        server = self.env.server
        assert server is not None
        if self.profile.is_demo:
            url = f"{server.base}/demo/index.html"
        elif self.profile.folder is not None:
            url = f"{server.base}/app/{self.profile.index}"
        else:
            url = self.profile.url
        query = fill(self.profile.query, self._values) if self.profile.query else ""
        if query:
            url += ("&" if "?" in url else "?") + query
        return url

    # -- failing clearly --------------------------------------------------------------------------------
    async def _fail(self, cause: str) -> None:
        """Save this actor's screenshot and console log, then raise :class:`BrowserError`."""
        message = f"{self.actor} (browser): {cause}"
        status = await self._status_text()
        if status:
            message += f" (the page's status line: {status!r})"
        self.failures.append(message)
        saved = []
        folder = self.env.artifact_dir()
        if folder is not None:
            shot = await self.screenshot()
            if shot is not None:
                saved.append(shot)
            saved.append(self.write_console(folder))
            (folder / "failure.txt").write_text(message + "\n", encoding="utf-8")
        where = f" (screenshot and console log: {saved[0].parent})" if saved else ""
        raise BrowserError(message + where)

    async def _status_text(self) -> str | None:
        selector = self.profile.selectors.status
        if not selector or self.driver is None or self.driver.page is None or self.env.host is None:
            return None
        with trio.move_on_after(3):
            try:
                text = await self.host.call(self.driver.text, selector, timeout=2, what=f"{self.actor}: status")
            except Exception:  # noqa: BLE001
                return None
            return " ".join(text.split()) if text else None
        return None

    async def screenshot(self) -> Path | None:
        folder = self.env.artifact_dir()
        if folder is None or self.driver is None or self.driver.page is None or self.env.host is None:
            return None
        path = folder / f"{self.actor}.png"
        with trio.move_on_after(8):
            try:
                await self.host.call(self.driver.screenshot, str(path), timeout=7, what=f"{self.actor}: screenshot")
            except Exception as exc:  # noqa: BLE001 - a crashed page has no picture
                log.debug("screenshot of %s failed: %r", self.actor, exc)
                return None
            self.env.artifacts.append(path)
            return path
        return None

    def write_console(self, folder: Path) -> Path:
        path = folder / f"{self.actor}.console.log"
        lines = [f"# {self.actor}: the browser console, page errors, dialogs, WebSockets (wall-clock times)"]
        if self.driver is not None:
            lines += [line.format() for line in list(self.driver.console)]
        for page in self.pages:
            for t, message in page.video.page_errors:
                lines.append(f"page {page.number} +{t - page.opened_at:.3f} s: page error: {message}")
            for t, ok, error in page.video.gum:
                if not ok:
                    lines.append(f"page {page.number} +{t - page.opened_at:.3f} s: getUserMedia failed: {error}")
        for failure in self.failures:
            lines.append(f"FAILED: {failure}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _on_crash(self, why: str) -> None:
        self.failures.append(why)
        if self.env.host is not None:
            self.env.host.mark_crashed(why)

    def _on_dialog(self, number: int, kind: str, message: str) -> None:
        """A confirm() the policy holds: accepted after the decision delay, at once for a restoring
        room, or when the story calls accept()."""
        call = self.page.video.last if self.page is not None else None
        room = call.room if call is not None else ""
        if room in self._restoring or (self.accept_policy == "auto" and self.decision_delay > 0):
            delay = 0.0 if room in self._restoring else self.decision_delay
            self._restoring.discard(room)

            async def later() -> None:
                await trio.sleep(delay)
                if self.driver is not None:
                    await self.host.call(self.driver.settle_dialog, number, True, timeout=ACTION_TIMEOUT,
                                         what=f"{self.actor}: accept")

            self._nursery.start_soon(later)
            return
        self._held_dialogs.append(number)

    # -- what the page reports ---------------------------------------------------------------------------
    def _calibrated(self, page: BrowserPage, calibration: Calibration) -> None:
        page.origin = calibration.origin
        page.calibration = calibration
        self._calibrations[calibration.origin] = (page, calibration)
        for event in self._waiting.pop(calibration.origin, []):
            self._on_page_event(event)
        self._waiting.clear()                           # anything else belongs to a document that is gone

    def _on_page_event(self, ev: dict) -> None:
        origin = ev.get("o")
        known = self._calibrations.get(origin)  # type: ignore[arg-type]
        if known is None:
            self._waiting.setdefault(origin, []).append(ev)  # type: ignore[arg-type]
            return
        page, calibration = known
        if page is not self.page:
            return                                       # a late report from a document that is gone
        try:
            self._handle(page, calibration.to_trio(float(origin), float(ev.get("n", 0.0))), ev)  # type: ignore[arg-type]
        except Exception:
            log.exception("%s: cannot handle the page event %r", self.actor, ev)

    def _journal_fields(self, t: float) -> dict:
        """What a page mark's journal record adds: ``jt``, the moment on the journal's clock (the clock
        of every emulator entry, so the page's stages line up with the servers'), and ``err_ms``,
        the bound of the page-clock mapping."""
        page = self.page
        out: dict[str, Any] = {}
        clock = getattr(self.env.stack, "clock", None)
        if clock is not None:
            out["jt"] = round(t + (clock.now() - trio.current_time()), 6)
        if page is not None and page.calibration is not None:
            out["err_ms"] = round(page.calibration.error * 1000.0, 3)
        return out

    def _page_mark(self, name: str, call: PageCall | None, t: float, **data: Any) -> None:
        self._observe(name, call, {"at": t, "service": "browser", "journal": self._journal_fields(t), **data})

    def _handle(self, page: BrowserPage, t: float, ev: dict) -> None:
        kind = ev.get("k")
        video = page.video
        call: PageCall | None
        if kind == "server_info":
            page.comet.authorized = bool(ev.get("authorized"))
            page.comet.server_infos.append((t, page.comet.authorized))
            page.comet._notify()
        elif kind == "comet_open":
            page.comet.connected = True
            page.comet.opens += 1
            self._timeline("comet_open", t, opens=page.comet.opens)
        elif kind == "comet_close":
            page.comet.connected = False
            page.comet.closes.append((t, int(ev.get("code") or 0), bool(ev.get("clean"))))
            self._timeline("comet_close", t, clean=bool(ev.get("clean")), code=int(ev.get("code") or 0))
        elif kind == "sip_close":
            if ev.get("current"):      # the newest UA's transport closed, or its reconnect failed
                self._timeline("sip_disconnected", t, sock=ev.get("sock"), code=ev.get("code"))
        elif kind == "push":
            sys = ev.get("sys") or {}
            pipe = str(sys.get("callPipe", ""))
            active = video.active
            if video.in_call and active is not None and active.pipe == pipe:
                self._page_mark("rejoin_ignored", active, t, callKey=sys.get("callKey"))
                return
            call = PageCall(pipe, sys, ev.get("message"), t)
            video.calls[pipe] = call
            video.last = call
            self._page_mark("push_received", call, t)
        elif kind == "callback":
            self._on_page_callback(page, t, str(ev.get("name")), ev.get("arg") or {})
        elif kind == "mark":
            self._on_page_mark(page, t, str(ev.get("name")), ev)
        elif kind == "gum":
            ok = bool(ev.get("ok"))
            video.gum.append((t, ok, ev.get("error")))
            call = video.active or video.last
            marks = self.marks
            if ok and "accept_call" in marks:
                which = "gum2" if "registered" in marks else "gum1"
                if which not in marks:
                    self._page_mark(which, call, t)
            elif not ok:
                self._page_mark("gum_failed", call, t, error=ev.get("error"))
                missing = self.env.host.missing_media() if self.env.host is not None else []
                if missing:
                    self.failures.append(f"getUserMedia failed ({ev.get('error')}): {'; '.join(missing)}")
                    self._nursery.start_soon(self._fail, f"getUserMedia failed ({ev.get('error')}): "
                                                         f"{'; '.join(missing)}")
        elif kind == "sip_open":
            if ev.get("current"):
                self._page_mark("sip_connected", video.active, t)
        elif kind == "sip":
            self._on_sip(page, t, ev)
        elif kind == "ice":
            video.ice.append((t, str(ev.get("state"))))
            self._page_mark("ice", video.active, t, state=ev.get("state"))
            if ev.get("state") in ("connected", "completed") and "ice_connected" not in self.marks:
                self._media_mark("ice_connected", video.active, t)
        elif kind == "pc":
            if ev.get("state") == "connected" and "dtls_connected" not in self.marks:
                self._media_mark("dtls_connected", video.active, t)
        elif kind == "media_stats":
            sample = {"video": ev.get("video"), "audio": ev.get("audio")}
            video.media_stats.append((t, sample))
            if self.journal is not None and getattr(self.journal, "enabled", False):
                self.journal.record("browser", "media_stats", dev_id=self.target.dev_id, user_id=self.user_id,
                                    data=json.dumps({"actor": self.actor, "t": round(t, 6), **sample},
                                                    separators=(",", ":"), sort_keys=True))
        elif kind == "remote_frame":
            video.remote_frames.append((t, {"width": ev.get("width"), "height": ev.get("height")}))
            if "first_remote_frame" not in self.marks:
                call = video.active
                self._mark("first_remote_frame", room=call.room if call else "", call=call, at=t, service="browser",
                           journal=self._journal_fields(t), media="page", width=ev.get("width"),
                           height=ev.get("height"))
        elif kind == "received":
            call = video.calls.get(str(ev.get("pipe")))
            data = {k: ev[k] for k in ("event", "user_id", "status", "type", "callKey", "isMute", "isHold") if k in ev}
            video.received.append((t, data))
            self._page_mark("received", call, t, **data)
        elif kind == "state":
            state = ev.get("state") or {}
            video.in_call = bool(state.get("inCall"))
            active = state.get("active")
            if active:
                pipe = str(active.get("pipe"))
                if pipe not in video.calls:
                    video.calls[pipe] = PageCall(pipe, {"callPipe": pipe, "callKey": active.get("callKey"),
                                                        "conference_name": active.get("room"),
                                                        "sipNumber": active.get("sipNumber")}, None, t)
                video.active_pipe = pipe
            else:
                video.active_pipe = None
            video.mute = state.get("mute")
            video.hold = bool(state.get("hold"))
            self._notify()
        elif kind == "backend":
            join = self.current
            if ev.get("which") == "call" and join is not None and "backend_invite_ok" not in join.marks \
                    and "backend_invite_start" in join.marks:
                self._mark("backend_invite_ok", room=join.room, at=t, service="browser",
                           journal=self._journal_fields(t), status=ev.get("status"))
        elif kind == "page_error":
            video.page_errors.append((t, str(ev.get("message"))))

    def _on_page_callback(self, page: BrowserPage, t: float, name: str, arg: dict) -> None:
        video = page.video
        info = arg.get("callInfo") if isinstance(arg, dict) else None
        sys = None
        if isinstance(info, dict):
            sys = info.get("sys") if "sys" in info else (info.get("data") or {}).get("sys")
        call = video.calls.get(str(sys.get("callPipe"))) if isinstance(sys, dict) else None
        call = call or video.active or video.last
        py = PY_CALLBACKS.get(name, name)
        video.callbacks.append((t, py, arg))
        if name == "onCall":
            self._page_mark("on_call", video.last, t)
        elif name == "onCallStart":
            self._page_mark("call_start", call, t)
        elif name == "onCallEnd":
            self._page_mark("call_end", call, t, status=arg.get("status"))
        elif name == "onCallAccept":
            self._page_mark("call_accept", call, t)
        self._on_callback(py, arg, at=t)
        if name == "onCallEnd":
            self._on_call_end(arg)
        self._notify()

    def _on_page_mark(self, page: BrowserPage, t: float, name: str, ev: dict) -> None:
        video = page.video
        pipe = ev.get("pipe")
        call = video.calls.get(str(pipe)) if pipe else None
        if name == "accept_call":
            call = video.last
            if call is not None and not video.in_call:
                call.is_accept = True
                video.active_pipe = call.pipe
                video.in_call = True
        call = call or video.active or video.last
        if name == "join_click":
            join = self.current
            if join is not None and "backend_invite_start" not in join.marks and not self._scheduled_join:
                self._mark("backend_invite_start", room=join.room, at=t, service="browser",
                           journal=self._journal_fields(t))
            return
        if name == "hangup":
            recent = [b for b in self._bench_hangups if t - b < 5.0]
            self._bench_hangups = recent[1:]
            if recent:
                return                                   # the story's own press, marked when it happened
        data = {k: v for k, v in ev.items() if k in ("status", "tracks", "element")}
        self._page_mark(name, call, t, **data)

    def _timeline(self, name: str, t: float, **data: Any) -> None:
        """A transport event of the page (comet_open, comet_close, sip_disconnected) for the scenario
        timeline, as a virtual actor's comet client and JsSIP report them; not a mark."""
        if self.listeners:
            self._emit(name, t, data)

    # -- the media path (emulator/freeswitch/media_link.py) ---------------------------------------------
    # The page's peer connection is tracked on the link table as the virtual client's is
    # (bench/clients/sip_ua.py): open once the answer is in, closed when the session ends or the page
    # goes.  So a SIP WebSocket that drops and comes back (a lost network, a reset) leaves the member's
    # media alone, and a page that goes leaves a ghost -- for a real browser as for a virtual one.
    def _open_media(self, call_id: str) -> None:
        links = getattr(self.network, "links", None)
        if links is not None and call_id and call_id not in self._media_paths:
            self._media_paths.add(call_id)
            links.open_media(self.actor, call_id)

    def _close_media(self, call_id: str) -> None:
        links = getattr(self.network, "links", None)
        if links is not None and call_id in self._media_paths:
            self._media_paths.discard(call_id)
            links.close_media(self.actor, call_id)

    def _close_all_media(self) -> None:
        for call_id in sorted(self._media_paths):
            self._close_media(call_id)

    def _on_sip(self, page: BrowserPage, t: float, ev: dict) -> None:
        if not ev.get("current"):
            return                                       # an older UA of this page (they are never stopped)
        flags = page.sip.setdefault(int(ev.get("sock") or 0), {})
        call = page.video.active
        status = ev.get("status")
        method = ev.get("method")
        cseq = ev.get("cseq")
        call_id = str(ev.get("callid") or "")
        if ev.get("dir") == "in" and status == 200 and cseq == "INVITE":
            self._open_media(call_id)
        elif method == "BYE":
            self._close_media(call_id)
        if ev.get("dir") == "in" and status == 200 and cseq == "REGISTER" and not flags.get("registered"):
            flags["registered"] = True
            self._page_mark("registered", call, t)
        elif ev.get("dir") == "out" and method == "INVITE" and not flags.get("invited"):
            flags["invited"] = True
            self._page_mark("sip_invite_sent", call, t)
        elif ev.get("dir") == "in" and status == 200 and cseq == "INVITE" and not flags.get("answered"):
            flags["answered"] = True
            self._page_mark("answered", call, t)
        elif ev.get("dir") == "in" and method == "BYE":
            self._page_mark("session_ended", call, t, originator="remote", cause="BYE")
        elif ev.get("dir") == "out" and method == "BYE":
            self._page_mark("session_ended", call, t, originator="local", cause="Terminated")
        elif ev.get("dir") == "in" and isinstance(status, int) and status >= 300 and cseq == "INVITE" \
                and status not in (401, 407):
            self._page_mark("session_failed", call, t, status=status, cause=str(ev.get("line", ""))[12:])

    def _media_mark(self, name: str, active: PageCall | None, t: float) -> None:
        """A join mark the page measured with real media (ICE, DTLS connected)."""
        call: Any = active    # a PageCall stands in for the virtual client's CallState (same fields used)
        self._mark(name, room=active.room if active else "", call=call, at=t, service="browser",
                   journal=self._journal_fields(t), media="page")

    def _first_frame_check(self) -> None:
        """With real media the page's own first decoded remote frame (``requestVideoFrameCallback``) is
        ``first_remote_frame``: measured, never the media model's ``max(video_attached, media_flowing)``."""
        if self.page is None or self.env.real_media:
            return
        super()._first_frame_check()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
