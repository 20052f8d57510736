"""Network profiles of a run (``cometbench run --network PROFILE``): each actor's link to the servers.

``--network`` takes what ``cometbench call --network`` takes, through the same parser
(:func:`bench.options.parse_network_spec`): a profile for every actor (``4g``), per actor
(``doctor=lan,patient=3g``; actors a story creates later -- a nurse, a second device -- get the
profile for everyone), or both (``4g,patient=3g``).  The profiles are the tables of
``fixtures/network_profiles.toml`` (loopback, lan, wifi, dsl, 4g, 3g, bad-wifi, lossy, call-drop).

An actor's profile is put on every protocol it speaks -- the comet WebSocket, CometQL, SIP and the
media path -- the moment the story creates it (:func:`apply_to_actor`), through the stack's link
table (:mod:`emulator.net.links`); the page's AJAX round trip to the app server
(``app_request_rtt``) is one round trip of it, as in ``cometbench call``.  So one profile moves
every stage of that actor's joins together.  The app backend sits in the data centre and gets no
conditions.  ``loopback`` is no conditions at all: the in-memory network delivers at once.

Histograms are tagged with the profile of the actor whose join it was (``network=3g``), so a mixed
run keeps its profiles apart; stages a story measures itself (``s.measure``) carry the run's label
(:attr:`bench.options.NetworkSpec.label`).
"""

from __future__ import annotations

from typing import Any

from bench.options import LOOPBACK, NetworkSpec, SetupError, parse_network_spec
from bench.scenario.errors import ScenarioError

__all__ = ["LOOPBACK", "network_profiles", "check_network", "network_spec", "apply_to_actor"]


def network_profiles() -> list[str]:
    """Every profile name the project knows (loopback first)."""
    from emulator.net.links import profile_names

    names = [n for n in profile_names() if n != LOOPBACK]
    return [LOOPBACK, *names]


def network_spec(network: str | NetworkSpec) -> NetworkSpec:
    """The parsed spec; a :class:`ScenarioError` naming the unknown profile or actor."""
    if isinstance(network, NetworkSpec):
        return network
    try:
        return parse_network_spec(network)
    except SetupError as exc:
        raise ScenarioError(str(exc)) from None


def check_network(network: str | NetworkSpec) -> None:
    """A :class:`ScenarioError` for a spec that does not parse."""
    network_spec(network)


def apply_to_actor(links: Any, spec: NetworkSpec, actor: str) -> float:
    """Put the actor's profile on its links (``links`` None: no link table, nothing to do); returns
    the round trip of its page's requests to the app server in seconds."""
    link = spec.link_of(actor)
    if link is None:
        return 0.0
    if links is not None:
        links.set(link, client=actor)
    return link.rtt_ms / 1000.0
