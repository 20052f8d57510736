"""Finding and loading scenario files.

A scenario is a plain Python file; its stem is its name.  It defines ``async def story(s)`` and may
set, at module level:

``PROFILES``  the fidelity profiles whose story it tells (default ``("cppcomet-4.09",)``); CI runs it
              in each, and a story branches on ``s.faithful`` where the servers differ;
``DEFAULT``   ``False`` keeps it out of the default pack (``cometbench run`` without names): load
              scenarios such as ``join_storm`` run by name;
``TIMEOUT``   how long the whole story may take, in (virtual or real) seconds (default 600);
``CONFIG``    emulator config keys for its stack (README lists them), e.g. ``{"rtp_timeout": 60}``;
``ACTORS``    participant options per actor name, applied when that actor is created (the doctor and
              the patient at the start): ``{"doctor": {"quirks": ClientQuirks.fixed()}}``;
``NEEDS``     the powers of the in-process stack the story uses beyond talking to the servers:
              ``"faults"`` (restarts, a slow CometQL), ``"links"`` (link conditions, a lost network),
              ``"freeswitch"`` (FreeSWITCH's events, members, flags, ESL, talking) -- see
              ``bench/scenario/errors.py: POWERS``.  Default: all three; ``NEEDS = ()`` says the story
              runs against any deployment (``cometbench run --target``).  Against a target, a story
              that needs what the target lacks is skipped, with the reason in the report.

The pack is ``scenarios/`` of the repository, installed as the package ``bench.pack``; a name given
to ``cometbench run`` is a pack scenario or a path to a file.  Loading never raises: a file that
does not import, or defines no story, becomes a spec carrying the error, which fails that scenario
and only that one.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["ScenarioSpec", "pack_dir", "pack", "default_pack", "load", "resolve", "UnknownScenario"]

DEFAULT_PROFILES = ("cppcomet-4.09",)
DEFAULT_TIMEOUT = 600.0
DEFAULT_NEEDS = ("faults", "freeswitch", "links")   # unless a file says otherwise: the in-process stack


class UnknownScenario(LookupError):
    """A name that is neither a pack scenario nor a scenario file."""


@dataclass
class ScenarioSpec:
    name: str
    path: Path
    story: Callable[..., Any] | None = None
    doc: str = ""
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    default: bool = True
    timeout: float = DEFAULT_TIMEOUT
    config: dict[str, Any] = field(default_factory=dict)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    needs: tuple[str, ...] = DEFAULT_NEEDS
    error: str | None = None

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


def pack_dir() -> Path:
    """The folder of the shipped scenarios (``scenarios/`` in a checkout)."""
    return Path(str(files("bench.pack")))


def pack() -> list[ScenarioSpec]:
    """Every scenario of the pack, by name."""
    return [load(path) for path in sorted(pack_dir().glob("*.py")) if not path.stem.startswith("_")]


def default_pack() -> list[ScenarioSpec]:
    return [spec for spec in pack() if spec.default]


def resolve(names: list[str]) -> list[ScenarioSpec]:
    """Pack names or file paths -> specs; :class:`UnknownScenario` names what is known."""
    known = {path.stem: path for path in pack_dir().glob("*.py") if not path.stem.startswith("_")}
    specs = []
    for name in names:
        path = Path(name)
        if name in known:
            specs.append(load(known[name]))
        elif path.suffix == ".py" and path.is_file():
            specs.append(load(path))
        else:
            hint = f"no file {name}" if path.suffix == ".py" else f"known: {', '.join(sorted(known))}"
            raise UnknownScenario(f"unknown scenario {name!r} ({hint}; or give the path of a scenario .py file)")
    return specs


def load(path: Path) -> ScenarioSpec:
    path = Path(path)
    spec = ScenarioSpec(path.stem, path)
    module_name = f"cometbench_scenario_{path.stem}"
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module     # dataclasses and pickling inside the story need it
        module_spec.loader.exec_module(module)
    except BaseException as exc:  # a broken file fails its scenario, never the run
        if isinstance(exc, KeyboardInterrupt):
            raise
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        where = f" (line {frames[-1].lineno})" if frames else (
            f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else "")
        spec.error = f"cannot load {path}: {type(exc).__name__}: {exc}{where}"
        return spec
    spec.doc = inspect.getdoc(module) or ""
    story = getattr(module, "story", None)
    if story is None or not inspect.iscoroutinefunction(story):
        spec.error = f"{path} defines no `async def story(s)`"
        return spec
    spec.story = story
    try:
        profiles = getattr(module, "PROFILES", DEFAULT_PROFILES)
        spec.profiles = (profiles,) if isinstance(profiles, str) else tuple(profiles)
        spec.default = bool(getattr(module, "DEFAULT", True))
        spec.timeout = float(getattr(module, "TIMEOUT", DEFAULT_TIMEOUT))
        config = getattr(module, "CONFIG", {})
        if not isinstance(config, dict):
            raise TypeError("CONFIG must be a dict of emulator config keys")
        spec.config = dict(config)
        actors = getattr(module, "ACTORS", {})
        if not isinstance(actors, dict) or not all(isinstance(v, dict) for v in actors.values()):
            raise TypeError("ACTORS must map actor names to dicts of participant options")
        spec.actors = {str(k): dict(v) for k, v in actors.items()}
        spec.needs = _needs(getattr(module, "NEEDS", DEFAULT_NEEDS))
    except (TypeError, ValueError) as exc:
        spec.error = f"{path}: bad module settings: {exc}"
    return spec


def _needs(value: Any) -> tuple[str, ...]:
    from bench.scenario.errors import POWERS

    needs = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in needs if n not in POWERS]
    if unknown:
        raise ValueError(f"NEEDS names unknown power(s) {', '.join(map(repr, unknown))}; powers: {', '.join(POWERS)}")
    return tuple(sorted(set(needs)))
