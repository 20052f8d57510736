"""The media path of each member, driven by the network's link table instead of the SIP socket.

A browser's media (ICE, DTLS-SRTP) runs beside its SIP WebSocket, not through it (spec
video-call-flow.md 6.1): a SIP connection that drops and comes back leaves the media alone; a path
that is cut stops the media; a page that goes stops its media for good.  This module connects the
fake FreeSWITCH (its :class:`~emulator.freeswitch.conference.Bridge` and
:class:`~emulator.freeswitch.sip_core.SipCore`) with :class:`emulator.net.links.Links`:

* **Start delay** -- :meth:`MediaLinks.conditions_for` is the SIP core's ``link_for``: the media
  model (:mod:`emulator.freeswitch.media`) gets the ``media`` link of the client the call came from
  (``links.link(client, "media")``), so one profile moves the signalling delays and the media start
  together.  A client with no link rule gets the configured ``media_link`` preset.
* **Partitions** -- while a member's ``media`` link is partitioned its media does not flow: a flowing
  member stops (its RTP timeout of 300 s starts, as FreeSWITCH sees no RTP), a member whose media was
  about to start waits (:attr:`Bridge.media_gate`).  When the partition heals before the member is
  gone, the media flows again at once.  The browser's side of the same story (ICE fails after 30 s
  and JsSIP ends the session) is in ``bench/clients/sip_ua.py``.
* **Page gone** -- the virtual browser opens a media path when it applies the SDP answer and closes
  it when the session ends or the page goes (``links.open_media`` / ``links.close_media``).  A closed
  path stops the member's media (FreeSWITCH sees no more RTP; its RTP timeout runs).  If the
  member's SIP connection is gone too, the browser vanished without a BYE: the member becomes a
  ghost until the RTP timeout (``Bridge.signalling_lost``; lenient: it leaves at once).  If the SIP
  connection is alive, a BYE is on its way (a hangup) and ends the member the normal way.
* **SIP socket closed** -- for a member whose browser tracks its media path, a closed SIP flow only
  removes the registration (``SipCore.keeps_media``); the media goes on.  The bench's browser actors
  (bench/browser) track their page's path the same way.  Members of clients that do not track a
  path (a browser outside the bench, sipp) keep the old rule: a closed flow is a vanished browser.
* **FreeSWITCH restart** -- :meth:`MediaLinks.restart` marks every member's path broken, so the
  browsers' ICE fails as it would when the media endpoint disappears.

The decision and its reasons are in docs/decisions.md ("Media follows the link, not the SIP socket").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.media import LinkConditions
from emulator.freeswitch.model import Member
from emulator.net.links import Link, LinkChange, Links

if TYPE_CHECKING:  # pragma: no cover - the SIP core imports this module's owner, not the reverse
    from emulator.freeswitch.sip_core import Dialog, SipCore

__all__ = ["MediaLinks", "media_conditions"]


def media_conditions(link: Link) -> LinkConditions:
    """The media model's view of a :class:`~emulator.net.links.Link` (loss capped below 1, an
    unlimited link as 1 Gbit/s)."""
    return LinkConditions(rtt_ms=link.rtt_ms, jitter_ms=link.jitter_ms, loss=min(link.loss, 0.99),
                          bandwidth_kbps=link.bandwidth_kbps or 1_000_000.0, description=link.description)


class MediaLinks:
    """Glue between one node's bridge and SIP core and the network's link table."""

    def __init__(self, links: Links, bridge: Bridge, *, default: LinkConditions,
                 client_of: Callable[[Flow], str]) -> None:
        self.links = links
        self.bridge = bridge
        self.core: SipCore | None = None   # the node's SipCore (set by the stack): is a member's SIP flow alive?
        self.default = default
        self.client_of = client_of
        bridge.media_gate = self.gate
        self._unwatch = links.watch(self._on_change)

    def close(self) -> None:
        self._unwatch()
        if self.bridge.media_gate == self.gate:
            self.bridge.media_gate = None

    # -- what the SIP core asks ------------------------------------------------------------------
    def conditions_for(self, flow: Flow) -> LinkConditions:
        rule = self.links.rule(self.client_of(flow), "media")
        return self.default if rule is None else media_conditions(rule)

    def keeps_media(self, dialog: Dialog) -> bool:
        """Whether this dialog's media goes on without its SIP flow: its browser tracks a media path
        that is still open.  (A path already closed means the page went: the member is a ghost.)"""
        return self.links.media_state(dialog.channel.client, dialog.call_id) != "closed"

    # -- what the bridge asks -----------------------------------------------------------------------
    def gate(self, member: Member) -> bool:
        return self._state(member) not in ("partitioned", "broken")

    def _state(self, member: Member) -> str:
        channel = member.channel
        state = self.links.media_state(channel.client, channel.variables.get("sip_call_id", ""))
        if state == "closed" and self.links.partitioned(channel.client, "media"):
            return "partitioned"   # a browser that does not track its path still has a link
        return state

    # -- changes on the network ---------------------------------------------------------------------
    def _members(self) -> list[Member]:
        return [m for conf in list(self.bridge.conferences.values()) for m in conf.members]

    def _on_change(self, change: LinkChange) -> None:
        kind = change.kind
        if kind in ("partition", "heal"):
            for member in self._members():
                state = self._state(member)
                if state == "partitioned" and member.media == "flowing":
                    self.bridge.media_flowing(member.id, False)
                elif state == "up" and member.media != "flowing" and member.media_timer is None \
                        and not member.signalling_lost and not member.hold and not member.left:
                    self.bridge.media_flowing(member.id, True)
        elif kind == "media_close":
            for member in self._members():
                channel = member.channel
                if channel.client == change.client and channel.variables.get("sip_call_id") == change.call_id:
                    dialog = self.core.dialog_of(channel) if self.core is not None else None
                    if dialog is not None and dialog.flow.alive:
                        self.bridge.media_flowing(member.id, False)   # a BYE follows on the live flow
                    else:
                        self.bridge.signalling_lost(member.id)       # gone without a goodbye

    def restart(self) -> None:
        """The node restarts: every member's media endpoint is gone (the browsers' ICE will fail)."""
        self.links.break_media((m.channel.client, m.channel.variables.get("sip_call_id", ""))
                               for m in self._members())
