"""What ``cometbench run`` and ``cometbench call`` share: the network spec and the target spec.

**--network** -- ``4g`` (every actor), ``doctor=lan,patient=3g`` (per actor), or both
(``4g,patient=3g``: the patient on 3g, everyone else on 4g).  Profiles are the tables of
``fixtures/network_profiles.toml`` (:func:`emulator.net.links.profile_names`).  A profile is applied
per actor to every protocol the actor speaks, media included (:mod:`emulator.net.links`); the app
backend (``client="backend"``) sits in the data centre and gets none.  ``loopback`` means no
conditions at all: the in-memory network delivers at once, OS sockets go as fast as the machine.
:func:`parse_network_spec` gives a :class:`NetworkSpec`; a :class:`SetupError` names the unknown
profile, actor or field.

**--target** -- ``ws=HOST:PORT,cometql=HOST:PORT[,dev_id=N][,password=P][,ca=FILE][,insecure]``: a
deployment instead of the in-process emulator (a real CppComet + FreeSWITCH, or a separate
``cometbench serve``); the SIP node comes from the pushes.  :func:`parse_target` gives a
:class:`TargetSpec`; :func:`check_target` makes sure both addresses answer before anything runs.
Link conditions need both ends of a connection in this process, so a target takes ``--network
loopback`` only (:meth:`NetworkSpec.check_target`; use the kernel's netem on the path for the rest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from emulator.net.links import Link, LinkError, get_profile, profile_names

__all__ = ["SetupError", "NetworkSpec", "parse_network_spec", "TargetSpec", "parse_target", "check_target",
           "target_with_tls", "LOOPBACK", "IN_PROCESS"]

LOOPBACK = "loopback"
IN_PROCESS = "in-process"
_ACTOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELDS = ("rtt_ms", "jitter_ms", "loss", "bandwidth_kbps")


class SetupError(ValueError):
    """Input a run or a call cannot start with (an unknown profile, a malformed target, a target that
    does not answer ...): the message names the field or the address."""


# --- the network ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSpec:
    """``--network``: the profile of every actor (``default``) and of the ones named (``actors``), with
    field overrides (``--rtt-ms`` ... of ``cometbench call``) on top of each."""

    text: str = LOOPBACK
    default: str = LOOPBACK
    actors: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, float] = field(default_factory=dict)

    def profile_of(self, actor: str) -> str:
        return self.actors.get(actor, self.default)

    def link_of(self, actor: str) -> Link | None:
        """The actor's link, or None for no conditions (``loopback`` without overrides)."""
        name = self.profile_of(actor)
        if name == LOOPBACK and not self.overrides:
            return None
        link = get_profile(name) if name != LOOPBACK else Link()
        if self.overrides:
            link = Link(**{**{k: getattr(link, k) for k in _FIELDS}, **self.overrides}, description=link.description)
        return link

    @property
    def clean(self) -> bool:
        """No actor gets any condition."""
        return all(self.link_of(a) is None for a in ("*", *self.actors))

    @property
    def label(self) -> str:
        """A name for histogram tags (no , ; = or blanks): the profile, or ``doctor:lan+patient:3g``
        (``+*:4g`` for everyone else when that is not loopback)."""
        if not self.actors:
            return self.default
        parts = [f"{actor}:{name}" for actor, name in sorted(self.actors.items())]
        if self.default != LOOPBACK:
            parts.append(f"*:{self.default}")
        return "+".join(parts)

    def check_target(self) -> None:
        """A :class:`SetupError` unless the spec is clean: a target's far ends are not in this
        process, so delays, losses and partitions cannot be applied to its connections."""
        if not self.clean:
            raise SetupError(f"--network {self.text}: link conditions need both ends of a connection in this "
                             "process, and a --target is outside it; use --network loopback with a target (and "
                             "the kernel's netem on the path, e.g. `tc qdisc add dev eth0 root netem delay 40ms`)")


def parse_network_spec(text: str, *, actors: Iterable[str] | None = None,
                       overrides: dict[str, float] | None = None) -> NetworkSpec:
    """Parse ``--network``; ``actors``: the only actor names allowed (``cometbench call``: doctor and
    patient); ``overrides``: fields set on every actor's link.  A :class:`SetupError` names what is wrong."""
    known_actors = tuple(actors) if actors is not None else None
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise SetupError(f"--network: give a profile name (known: {', '.join(profile_names())})")
    default: str | None = None
    named: dict[str, str] = {}
    for part in parts:
        if not part:
            raise SetupError(f"--network {text!r}: an empty entry (profiles are separated by single commas)")
        actor, sep, name = (s.strip() for s in part.partition("="))
        if sep:
            if not _ACTOR.match(actor):
                raise SetupError(f"--network: {actor!r} is not an actor name (e.g. patient=3g)")
            if known_actors is not None and actor not in known_actors:
                raise SetupError(f"--network: unknown actor {actor!r}; known: {', '.join(known_actors)}")
            if actor in named:
                raise SetupError(f"--network: actor {actor!r} is given twice")
            named[actor] = _profile(name)
        else:
            if default is not None:
                raise SetupError(f"--network {text!r}: two profiles for everyone ({default}, {part}); give one, "
                                 "and per-actor ones as actor=profile")
            default = _profile(actor)
    if overrides:
        try:
            fields: dict[str, Any] = dict(overrides)
            Link(**fields)
        except TypeError:
            raise SetupError(f"--network override: unknown field(s) {sorted(set(overrides) - set(_FIELDS))}") from None
        except LinkError as exc:
            raise SetupError(f"--network override: {exc}") from None
    return NetworkSpec(str(text), default or LOOPBACK, named, dict(overrides or {}))


def _profile(name: str) -> str:
    try:
        get_profile(name)
    except LinkError as exc:
        raise SetupError(f"--network: {exc}") from None
    return name


# --- the target ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    """``--target ws=HOST:PORT,cometql=HOST:PORT[,dev_id=N][,password=P][,ca=FILE][,insecure]``."""

    ws_host: str
    ws_port: int
    cometql_host: str
    cometql_port: int
    dev_id: int = 15
    password: str = "CometQLPassword"
    ca_file: str = ""
    insecure: bool = False
    sip_tls: bool = True

    def describe(self) -> str:
        return f"ws={self.ws_host}:{self.ws_port},cometql={self.cometql_host}:{self.cometql_port},dev_id={self.dev_id}"

    def participant_target(self, journal: Any = None) -> Any:
        """The actors' :class:`~bench.actors.participant.Target` for this deployment."""
        from bench.actors.participant import Target
        from bench.clients.sip_ua import client_ssl_context

        context = client_ssl_context(self.ca_file or None, verify=not self.insecure)
        return Target(self.ws_host, self.ws_port, self.cometql_host, self.cometql_port, self.dev_id,
                      password=self.password, ssl_context=context, sip_secure=self.sip_tls, journal=journal)


def _hostport(field_name: str, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SetupError(f"target {field_name}={value!r}: expected HOST:PORT with a port 1-65535")
    return host.strip("[]"), int(port_text)


def parse_target(text: str) -> TargetSpec:
    """Parse ``--target``; a :class:`SetupError` names the field that is wrong."""
    fields_: dict[str, str] = {}
    flags: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            if key in ("insecure", "no-tls", "ws-sip"):
                flags.add(key)
                continue
            raise SetupError(f"target: {part!r} is not KEY=VALUE (keys: ws, cometql, dev_id, password, ca, insecure)")
        if key not in ("ws", "cometql", "dev_id", "password", "ca"):
            raise SetupError(f"target: unknown key {key!r}; known: ws, cometql, dev_id, password, ca, insecure")
        fields_[key] = value.strip()
    addresses = {name: _hostport(name, fields_[name]) for name in ("ws", "cometql") if name in fields_}
    for required in ("ws", "cometql"):
        if required not in addresses:
            raise SetupError(f"target: {required}=HOST:PORT is required "
                             "(e.g. ws=127.0.0.1:8087,cometql=127.0.0.1:3307)")
    (ws_host, ws_port), (ql_host, ql_port) = addresses["ws"], addresses["cometql"]
    dev_text = fields_.get("dev_id", "15")
    if not dev_text.isdigit() or not 0 < int(dev_text) < 1_000_000:
        raise SetupError(f"target dev_id={dev_text!r}: expected a number 1-999999")
    spec = TargetSpec(ws_host, ws_port, ql_host, ql_port, int(dev_text), fields_.get("password", "CometQLPassword"),
                      fields_.get("ca", ""), "insecure" in flags, "no-tls" not in flags and "ws-sip" not in flags)
    if spec.ca_file and not Path(spec.ca_file).is_file():
        raise SetupError(f"target ca={spec.ca_file}: no such file")
    return spec


def target_with_tls(spec: TargetSpec, ca: str | None, insecure: bool) -> TargetSpec:
    """The ``--ca FILE`` / ``--insecure`` flags on top of the spec's own ``ca=`` / ``insecure``."""
    if ca and not Path(ca).is_file():
        raise SetupError(f"--ca {ca}: no such file")
    if ca or insecure:
        return replace(spec, ca_file=ca or spec.ca_file, insecure=insecure or spec.insecure)
    return spec


async def check_target(network: Any, spec: TargetSpec, timeout: float = 5.0) -> None:
    """Both addresses answer (a TCP connect within ``timeout``), else a :class:`SetupError` naming the
    one that does not."""
    for name, host, port in (("ws", spec.ws_host, spec.ws_port), ("cometql", spec.cometql_host, spec.cometql_port)):
        try:
            with trio.fail_after(timeout):
                stream = await network.connect(host, port, client="probe")
        except trio.TooSlowError:
            raise SetupError(f"target {name}={host}:{port} does not answer "
                             f"(no connection within {timeout:g} s)") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SetupError(f"target {name}={host}:{port} does not answer ({reason})") from None
        await trio.aclose_forcefully(stream)


def probe_target(spec: TargetSpec, timeout: float = 5.0) -> None:
    """:func:`check_target` in a trio run of its own, on OS sockets (before a run starts)."""
    from emulator.net.network import OSNetwork

    trio.run(check_target, OSNetwork(), spec, timeout)
