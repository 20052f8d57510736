"""The one place the media worker reaches into a private part of aioice: host addresses to gather.

aioice 0.13.0 gathers its host candidates from ``aioice.ice.get_host_addresses(use_ipv4,
use_ipv6)``, which skips ``127.0.0.1`` and ``::1`` on purpose.  The fake FreeSWITCH binds
127.0.0.1 by default (house rule: loopback only) and a headless Chromium started with
``--allow-loopback-in-peer-connection`` offers a 127.0.0.1 candidate, so the endpoint must gather
loopback too -- and, to keep the answer short and the checks quick, only the address the emulator
serves on.  aioice has no public option for this, so :func:`gather_only` replaces the module-level
function (``Connection.gather_candidates`` looks it up in the module at call time).

``tests/unit/test_library_pins.py`` checks the assumptions (the function exists with this
signature, ``gather_candidates`` calls it by that name, a patched gather yields the address): an
aioice upgrade that moves it fails that test loudly instead of leaving the browser's ICE silently
without a pair.  Pinned: aioice==0.13.0 (pyproject.toml, the ``media`` extra).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

__all__ = ["gather_only", "PATCHED_NAME"]

#: The private function replaced, as ``module:attribute``.
PATCHED_NAME = "aioice.ice:get_host_addresses"


def gather_only(address: str) -> Callable[[bool, bool], list[str]]:
    """Make aioice gather host candidates on ``address`` alone (an IPv4 or IPv6 literal, loopback
    allowed) in this process; returns the function it installed.  ``0.0.0.0`` / ``::`` keep aioice's
    own choice plus loopback."""
    import aioice.ice as ice  # the media worker's process only: the emulator never imports aioice

    original = getattr(ice, "get_host_addresses", None)
    if original is None or not callable(original):
        raise RuntimeError(f"{PATCHED_NAME} is gone: aioice changed; see emulator/freeswitch/aioice_loopback.py")
    original = getattr(original, "__wrapped_original__", original)
    ip = ipaddress.ip_address(address)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if ip.is_unspecified:
            extra = ["127.0.0.1"] if use_ipv4 else []
            return extra + list(original(use_ipv4, use_ipv6))
        if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6):
            return [str(ip)]
        return []

    host_addresses.__wrapped_original__ = original  # type: ignore[attr-defined]
    ice.get_host_addresses = host_addresses
    return host_addresses
