"""Network profiles of a run (``cometbench run --network PROFILE``): the seam where link conditions plug in.

A network profile names the link every actor has to the servers: ``loopback`` (no conditions: the
in-memory network delivers at once, OS sockets on 127.0.0.1 as fast as the machine goes) and the
named presets of ``fixtures/network_profiles.toml`` (lan, dsl, 4g, 3g, bad-wifi, ...).  One profile
is meant to move every stage together: the signalling links of each actor (comet WebSocket,
CometQL, SIP) and the media model's start delay.

Today only ``loopback`` runs: the link conditions of the network seam (latency, jitter, loss,
bandwidth, partition, reset per client and protocol) are being built separately.  Every other
preset is recognised and refused with a clear message, so the option, the report field and the
histogram tag are already what they will be.  :func:`apply_network` is the one function that
merge fills in.
"""

from __future__ import annotations

from typing import Any

from bench.scenario.errors import NEEDS_LINKS, NotAvailable, ScenarioError

__all__ = ["LOOPBACK", "network_profiles", "check_network", "apply_network"]

LOOPBACK = "loopback"


def network_profiles() -> list[str]:
    """Every profile name the project knows (loopback first)."""
    from emulator.freeswitch.media import link_presets

    names = sorted(set(link_presets()) - {LOOPBACK})
    return [LOOPBACK, *names]


def check_network(name: str) -> None:
    """:class:`ScenarioError` for an unknown name, :class:`NotAvailable` for one that needs link
    conditions; nothing for a profile that runs."""
    known = network_profiles()
    if name not in known:
        raise ScenarioError(f"unknown network profile {name!r}; known: {', '.join(known)}")
    if name != LOOPBACK:
        raise NotAvailable(f"network profile {name!r} {NEEDS_LINKS}; only {LOOPBACK!r} runs today")


def apply_network(network: Any, name: str, *, actors: list[str] | None = None) -> None:
    """Put profile ``name`` on every actor's links of ``network`` (nothing to do for loopback)."""
    check_network(name)
