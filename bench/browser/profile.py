"""App profiles: which page a browser actor opens and how the bench drives it.

A profile is a TOML (or JSON) file; relative paths in it are relative to the file.  The bench ships
two kinds:

* the **demo app** (``demo``, the default; ``demo-legacy``, ``demo-jssip3``): the page in
  fixtures/demo_app/ served by the bench, configured through ``window.cometbenchConfig``; a file
  with ``kind = "demo"`` and a ``[demo]`` table sets ``legacy``, ``jssip`` (``2.0.6`` or ``3``) and
  ``backend`` (a URL where other auth.php / call.php answer, e.g. fixtures/demo_app/backend/ under
  ``php -S``; by default the bench's endpoints);
* **your own app** (``kind = "page"``): a page URL, or a folder the bench serves, plus your own
  copies of CometServerApi.js, cometVideoApi.js and jssip.js.

Every key of a ``page`` profile (README, "Bring your own app", walks through one)::

    name = "my video chat"
    url = "https://chat.example.com/room.html"  # or: folder = "public" (served at /app/) and index = "index.html"
    query = "room={room}"                        # appended to the page URL ({user_id} {user_key} {room} {dev_id})
    ready = "#status[data-state=ready]"          # optional: a selector that shows the page is ready to Join

    [scripts]                                    # URL pattern -> your local copy
    "**/CometServerApi.js" = "vendor/CometServerApi.js"
    "**/cometVideoApi.js" = "vendor/cometVideoApi.js"
    "**/jssip.js" = "vendor/jssip.js"

    [backend]                                    # your backend's URLs -> the bench's endpoints
    auth = "**/auth.php*"                        #   GET ?user_id&user_key: INSERT INTO users_auth
    call = "**/call.php*"                        #   GET ?user_id&room[&profile]: INSERT INTO conference
                                                 #   (leave both out and the page calls your own backend)

    [comet]
    nodes = ["app.comet-server.ru"]              # the page's comet node(s), host[:port]: sent to the emulator
    user_storage_key = "user_id"                 # localStorage key the page takes the user id from
    config_global = ""                           # optional: window.<name> = [comet.config] before the page runs
    config = {}                                  # values may use the {placeholders}

    [selectors]                                  # the page's controls (CSS or Playwright selectors)
    join = "#join"
    hangup = "#hangup"
    mute_audio = "#mute-audio"                   # a toggle: clicked when the page's mute state differs
    mute_video = "#mute-video"
    room = ""                                    # optional: an input filled with the room before Join
    profile = ""                                 # optional: an input filled with the conference profile
    accept = ""                                  # optional: an Accept button (else confirm() is accepted)
    status = ""                                  # optional: the status line (quoted when the actor fails)

    [browser]
    shim = true                                  # URL.createObjectURL(MediaStream) shim (real-video-client.md 2)
    load_timeout = 20                            # seconds for the page to load
    selector_timeout = 5                         # seconds for a control to appear
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.fixtures import path as fixture_path

__all__ = ["AppProfile", "Selectors", "ProfileError", "load_profile", "demo_profile", "BUILTIN_PROFILES",
           "DEMO_DIR", "JSSIP_VERSIONS"]

DEMO_DIR = fixture_path("demo_app")
JSSIP_VERSIONS = ("2.0.6", "3")
BUILTIN_PROFILES = ("demo", "demo-legacy", "demo-jssip3")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the key."""


@dataclass
class Selectors:
    join: str = ""
    hangup: str = ""
    mute_audio: str = ""
    mute_video: str = ""
    room: str = ""
    profile: str = ""
    accept: str = ""
    status: str = ""


@dataclass
class AppProfile:
    name: str = "demo"
    kind: str = "demo"                        # demo | page
    url: str = ""
    folder: Path | None = None
    index: str = "index.html"
    query: str = ""
    ready: str = ""
    scripts: dict[str, Path] = field(default_factory=dict)
    backend_auth: str = ""
    backend_call: str = ""
    comet_nodes: list[str] = field(default_factory=list)
    user_storage_key: str = ""
    config_global: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    selectors: Selectors = field(default_factory=Selectors)
    shim: bool = True
    load_timeout: float = 20.0
    selector_timeout: float = 5.0
    # the demo app's own settings
    legacy: bool = False
    jssip: str = "2.0.6"
    demo_backend: str = ""                    # the demo's auth.php/call.php elsewhere (a PHP backend); "": the bench's
    source: str = "built in"

    @property
    def is_demo(self) -> bool:
        return self.kind == "demo"


def demo_profile(name: str = "demo") -> AppProfile:
    """The demo app: ``demo`` (JsSIP 2.0.6, streams attached with srcObject), ``demo-legacy``
    (URL.createObjectURL as cometVideoApi.js does: needs the shim), ``demo-jssip3`` (JsSIP 3.x)."""
    if name not in BUILTIN_PROFILES:
        raise ProfileError(f"unknown built-in app profile {name!r}; built in: {', '.join(BUILTIN_PROFILES)}")
    return AppProfile(
        name=name, kind="demo", folder=DEMO_DIR, index="index.html", ready="#status[data-state=ready]",
        selectors=Selectors(join="#join", hangup="#hangup", mute_audio="#mute-audio", mute_video="#mute-video",
                            room="#room", profile="#profile", status="#status"),
        legacy=name == "demo-legacy", jssip="3" if name == "demo-jssip3" else "2.0.6")


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: [{key}] must be a table")
    return value


def _str(table: dict, key: str, where: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return value


def _number(table: dict, key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ProfileError(f"{where}: {key} must be a positive number")
    return float(value)


def load_profile(spec: str | Path) -> AppProfile:
    """A built-in name (``demo``, ``demo-legacy``, ``demo-jssip3``) or a ``.toml`` / ``.json`` file."""
    text = str(spec)
    if text in BUILTIN_PROFILES:
        return demo_profile(text)
    path = Path(text)
    if not path.is_file():
        raise ProfileError(f"app profile {text!r}: no such file (built in: {', '.join(BUILTIN_PROFILES)})")
    where = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw)
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{where}: cannot read it: {exc}") from None
    base = path.resolve().parent
    known = {"name", "kind", "url", "folder", "index", "query", "ready", "scripts", "backend", "comet", "selectors",
             "browser", "demo"}
    unknown = set(data) - known
    if unknown:
        raise ProfileError(f"{where}: unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    kind = _str(data, "kind", where, "page")
    if kind == "demo":
        demo = _table(data, "demo", where)
        profile = demo_profile("demo")
        profile.legacy = bool(demo.get("legacy", False))
        profile.jssip = _str(demo, "jssip", where, "2.0.6")
        profile.demo_backend = _str(demo, "backend", where)
        if profile.demo_backend and not re.match(r"^https?://[^/]+/(.*/)?$", profile.demo_backend):
            raise ProfileError(f"{where}: [demo] backend must be an http(s) URL ending in '/', "
                               f"where auth.php and call.php are")
    elif kind == "page":
        profile = AppProfile(kind="page")
    else:
        raise ProfileError(f"{where}: kind must be 'page' or 'demo', not {kind!r}")
    profile.source = where
    profile.name = _str(data, "name", where, path.stem)
    if kind == "page":
        profile.url = _str(data, "url", where)
        folder = _str(data, "folder", where)
        if bool(profile.url) == bool(folder):
            raise ProfileError(f"{where}: give either url (a page of yours) or folder (served by the bench)")
        if folder:
            profile.folder = (base / folder).resolve()
            if not profile.folder.is_dir():
                raise ProfileError(f"{where}: folder {profile.folder} does not exist")
        profile.index = _str(data, "index", where, "index.html")
        profile.query = _str(data, "query", where)
        profile.ready = _str(data, "ready", where)
        for pattern, file in _table(data, "scripts", where).items():
            if not isinstance(file, str):
                raise ProfileError(f"{where}: [scripts] {pattern!r} must name a file")
            resolved = (base / file).resolve()
            if not resolved.is_file():
                raise ProfileError(f"{where}: [scripts] {pattern!r}: no such file {resolved}")
            profile.scripts[pattern] = resolved
        backend = _table(data, "backend", where)
        profile.backend_auth = _str(backend, "auth", where)
        profile.backend_call = _str(backend, "call", where)
        unknown = set(backend) - {"auth", "call"}
        if unknown:
            raise ProfileError(f"{where}: [backend] unknown keys {', '.join(sorted(unknown))} (auth, call)")
        comet = _table(data, "comet", where)
        nodes = comet.get("nodes", ["app.comet-server.ru"])
        if not isinstance(nodes, list) or not all(isinstance(n, str) and n for n in nodes):
            raise ProfileError(f"{where}: [comet] nodes must be a list of host[:port] strings")
        profile.comet_nodes = list(nodes)
        profile.user_storage_key = _str(comet, "user_storage_key", where)
        profile.config_global = _str(comet, "config_global", where)
        config = comet.get("config", {})
        if not isinstance(config, dict):
            raise ProfileError(f"{where}: [comet] config must be a table")
        profile.config = config
        selectors = _table(data, "selectors", where)
        sel = Selectors()
        for key in vars(sel):
            setattr(sel, key, _str(selectors, key, where))
        unknown = set(selectors) - set(vars(sel))
        if unknown:
            raise ProfileError(f"{where}: [selectors] unknown keys {', '.join(sorted(unknown))}")
        profile.selectors = sel
    browser = _table(data, "browser", where)
    profile.shim = bool(browser.get("shim", True))
    profile.load_timeout = _number(browser, "load_timeout", where, profile.load_timeout)
    profile.selector_timeout = _number(browser, "selector_timeout", where, profile.selector_timeout)
    if profile.jssip not in JSSIP_VERSIONS:
        raise ProfileError(f"{where}: jssip must be one of {', '.join(JSSIP_VERSIONS)}")
    return profile


def fill(template: str, values: dict[str, Any]) -> str:
    """``{user_id}``-style placeholders; unknown names are left as they are."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", str(value))
    return out


def fill_deep(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, list):
        return [fill_deep(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill_deep(v, values) for k, v in value.items()}
    return value
