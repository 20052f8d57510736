"""mod_conference profiles: ``conference.conf.xml`` loaded into :class:`ConferenceProfile` objects.

The file is FreeSWITCH's ``autoload_configs/conference.conf.xml``; ``fixtures/conference.conf.xml``
mirrors the one the CppComet roles ship (profiles ``default``, ``video``, ``audio``) plus the bench's
``video-2`` (max-members 2).  Parsing follows mod_conference 1.6's ``conference_new``:

* parameter names are case-insensitive and ``_`` reads as ``-``;
* ``rate`` must be one of 8000/12000/16000/24000/32000/44100/48000, ``interval`` a multiple of 10
  up to 120 ms, otherwise the built-in value stays;
* ``max-members``: C ``strtol`` with base 0 (``0x10``, ``010`` work); negative, garbage or ``1``
  mean 0 = no limit;
* ``comfort-noise``: a number 2..9999 is the level, a true word (``true``, ``yes``, ``on``...) means
  level 1400, anything else 0;
* ``min-required-recording-participants``: only ``"1"`` or ``"2"``; anything else keeps 1;
* ``video-mode``: ``passthrough`` (the default), ``transcode`` or ``mux``.

``$${name}`` pre-processor variables are expanded at load time from ``variables`` (defaults: the
CppComet vars.xml ``domain=FSdefaultDomain`` and FreeSWITCH's stock ``hold_music``,
``outbound_caller_name``, ``outbound_caller_id``); unknown ones (``$${recordings_dir}``) are left as
they are for the bridge to fill in.  ``${...}`` channel variables are left for use time.

Unknown profile (spec video-call-flow.md 5.1 [uncertain], settled here from the 1.6 source):
``conference_function`` looks the profile up with ``switch_xml_find_child`` and passes NULL when it
is missing; ``conference_new`` then uses its compiled-in defaults and names the profile ``"none"``.
So :meth:`ConferenceProfiles.resolve` returns :func:`builtin_profile`: name ``none``, rate 8000,
interval 20, energy-level 0, no comfort noise, no sounds, no limit, no auto-record, passthrough video
and no ``domain`` param (the conference domain then comes from the caller's ``presence_id``, or is
``cluecon.com``).  The dialplan in the CppComet roles routes any ``<dev>*<room>*<word>`` there, so a
typo in the profile part of ``sipNumber`` silently gets these defaults.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from emulator.config import DEFAULT_DOMAIN
from emulator.fixtures import path as fixture_path
from emulator.wire.cnum import c_strtol

# installed with the package (fixtures/ is the package emulator.fixtures), so found from any folder
DEFAULT_PATH = fixture_path("conference.conf.xml")

DEFAULT_VARIABLES = {
    "domain": DEFAULT_DOMAIN,
    "domain_name": DEFAULT_DOMAIN,
    "hold_music": "local_stream://moh",
    "outbound_caller_name": "FreeSWITCH",
    "outbound_caller_id": "0000000000",
}

VALID_RATES = (8000, 12000, 16000, 24000, 32000, 44100, 48000)
SOUND_PARAMS = (
    "enter-sound", "exit-sound", "alone-sound", "moh-sound", "muted-sound", "unmuted-sound",
    "mute-detect-sound", "kicked-sound", "locked-sound", "is-locked-sound", "is-unlocked-sound",
    "pin-sound", "bad-pin-sound", "perpetual-sound", "join-only-sound", "ack-sound", "nack-sound",
)
TRUE_WORDS = ("yes", "on", "true", "t", "enabled", "active", "allow")

_PREPROCESSOR = re.compile(r"\$\$\{([^}]+)\}")


def max_members_value(text: str) -> int | None:
    """A max-members value as mod_conference takes it: a limit above 1, or 0 for none (no digits
    read 0); ``None`` for a value it ignores (negative, exactly 1, beyond a 32-bit ``int``)."""
    value = c_strtol(text)
    value = 0 if value is None else value
    if value < 0 or value == 1 or value > 0x7FFFFFFF:
        return None
    return value


def parse_max_members(text: str | None) -> int:
    """max-members / conference_max_members as FS reads them: >1 is a limit, anything else 0."""
    if text is None or not text.strip():
        return 0
    return max_members_value(text) or 0


def is_true(text: str | None) -> bool:
    """``switch_true``: yes/on/true/t/enabled/active/allow or a non-zero number."""
    if text is None:
        return False
    t = text.strip().lower()
    if t in TRUE_WORDS:
        return True
    try:
        return int(t) != 0
    except ValueError:
        return False


@dataclass(frozen=True)
class ConferenceProfile:
    """One ``<profile>`` of conference.conf.xml, as mod_conference 1.6 would apply it."""

    name: str
    domain: str | None = None
    rate: int = 8000
    interval: int = 20
    energy_level: int = 0
    comfort_noise: int = 0                 # level; 0 = off ("true" means 1400)
    max_members: int = 0                   # 0 = unlimited (1 and garbage also end up here)
    max_members_sound: str | None = None
    auto_record: str | None = None         # a path template or rtmp:// / shout:// URL
    min_required_recording_participants: int = 1
    video_mode: str = "passthrough"        # passthrough | transcode | mux
    caller_id_name: str = "Conference"
    caller_id_number: str = "0000000000"
    member_flags: str = ""
    conference_flags: str = ""
    endconf_grace_time: int = 0
    suppress_events: frozenset[str] = frozenset()
    sounds: dict[str, str] = field(default_factory=dict)   # e.g. {"enter-sound": "tone_stream://..."}
    params: dict[str, str] = field(default_factory=dict)   # every param as read (names normalised)
    builtin: bool = False                  # True: the compiled-in defaults of a missing profile

    def sound(self, name: str) -> str | None:
        return self.sounds.get(name)


def builtin_profile() -> ConferenceProfile:
    """What ``conference_new`` uses when the named profile is missing (profile name ``none``)."""
    return ConferenceProfile(name="none", builtin=True)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def expand_preprocessor(text: str, variables: Mapping[str, str]) -> str:
    """Expand ``$${name}``; unknown names are kept verbatim."""
    return _PREPROCESSOR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def profile_from_params(name: str, params: Mapping[str, str]) -> ConferenceProfile:
    """Build a profile from already-expanded params, applying mod_conference's validation."""
    p = {_normalise(k): v for k, v in params.items()}
    kwargs: dict = {"name": name, "params": dict(p)}

    def text(key: str) -> str | None:
        value = p.get(key)
        return value if value not in (None, "") else None

    if (v := text("domain")) is not None:
        kwargs["domain"] = v
    if (v := text("rate")) is not None:
        n = c_strtol(v) or 0
        if n in VALID_RATES:
            kwargs["rate"] = n
    if (v := text("interval")) is not None:
        n = c_strtol(v) or 0
        if n > 0 and n % 10 == 0 and n <= 120:
            kwargs["interval"] = n
    if (v := text("energy-level")) is not None:
        kwargs["energy_level"] = max(0, c_strtol(v) or 0)
    if (v := text("comfort-noise")) is not None:
        n = c_strtol(v) or 0
        kwargs["comfort_noise"] = n if 1 < n < 10000 else (1400 if is_true(v) else 0)
    if (v := text("max-members")) is not None:
        kwargs["max_members"] = parse_max_members(v)
    if (v := text("max-members-sound")) is not None:
        kwargs["max_members_sound"] = v
    if (v := text("auto-record")) is not None:
        kwargs["auto_record"] = v
    if (v := text("min-required-recording-participants")) is not None and v in ("1", "2"):
        kwargs["min_required_recording_participants"] = int(v)
    if (v := text("video-mode")) is not None and v.lower() in ("passthrough", "transcode", "mux"):
        kwargs["video_mode"] = v.lower()
    if (v := text("caller-id-name")) is not None:
        kwargs["caller_id_name"] = v
    if (v := text("caller-id-number")) is not None:
        kwargs["caller_id_number"] = v
    if (v := text("member-flags")) is not None:
        kwargs["member_flags"] = v
    if (v := text("conference-flags")) is not None:
        kwargs["conference_flags"] = v
    if (v := text("endconf-grace-time")) is not None:
        kwargs["endconf_grace_time"] = max(0, c_strtol(v) or 0)
    if (v := text("suppress-events")) is not None:
        kwargs["suppress_events"] = frozenset(e.strip() for e in v.split(",") if e.strip())
    kwargs["sounds"] = {k: p[k] for k in SOUND_PARAMS if p.get(k)}
    return ConferenceProfile(**kwargs)


class ConferenceProfiles(Mapping[str, ConferenceProfile]):
    """The profiles of one conference.conf.xml; :meth:`resolve` falls back to the built-in defaults."""

    def __init__(self, profiles: Mapping[str, ConferenceProfile] | None = None, *, source: str = "") -> None:
        self._profiles = dict(profiles or {})
        self.source = source

    def __getitem__(self, name: str) -> ConferenceProfile:
        return self._profiles[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)

    def resolve(self, name: str | None) -> ConferenceProfile:
        """The profile a ``conference <name>@<profile>`` call gets (``default`` when no @profile)."""
        return self._profiles.get(name or "default") or builtin_profile()

    def with_profile(self, profile: ConferenceProfile) -> ConferenceProfiles:
        """A copy with one profile added or replaced (tests and scenarios)."""
        return ConferenceProfiles({**self._profiles, profile.name: profile}, source=self.source)


def parse_conference_conf(text: str, variables: Mapping[str, str] | None = None) -> ConferenceProfiles:
    """Parse the XML text of a conference.conf.xml."""
    vars_ = {**DEFAULT_VARIABLES, **(variables or {})}
    root = ET.fromstring(text)
    profiles: dict[str, ConferenceProfile] = {}
    container = root.find("profiles")
    for node in (container.findall("profile") if container is not None else []):
        name = node.get("name")
        if not name:
            continue
        params: dict[str, str] = {}
        for param in node.findall("param"):
            key = param.get("name")
            if not key:
                continue
            params[_normalise(key)] = expand_preprocessor(param.get("value", ""), vars_)
        profiles[name] = profile_from_params(name, params)
    return ConferenceProfiles(profiles)


def load_conference_profiles(path: str | Path | None = None,
                             variables: Mapping[str, str] | None = None) -> ConferenceProfiles:
    """Load ``path`` (default: ``fixtures/conference.conf.xml``)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    profiles = parse_conference_conf(path.read_text(encoding="utf-8"), variables)
    profiles.source = str(path)
    return profiles


__all__ = [
    "ConferenceProfile", "ConferenceProfiles", "builtin_profile", "load_conference_profiles",
    "parse_conference_conf", "profile_from_params", "parse_max_members", "max_members_value", "is_true",
    "expand_preprocessor", "DEFAULT_PATH", "DEFAULT_VARIABLES",
]
