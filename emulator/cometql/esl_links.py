"""The comet server's ESL links to external FreeSWITCH nodes (the ``[[freeswitch]]`` entries).

When the emulated comet side runs with a FreeSWITCH that is not in this process (a real one, or a
``cometbench serve --freeswitch-only``), ``SELECT * FROM conference_members`` asks that node over ESL,
as CppComet does (spec video-call-flow.md 4.2, 5.8): ``auth <password>``, then ``api conference
xml_list``, and the reply is parsed with the real server's rules
(:func:`emulator.cometql.conference.parse_xml_list`).

The real server opens each link lazily, once: it sets its "connected" flag before trying and never
connects again, so a FreeSWITCH that was down at the first query, or that restarted later, leaves
``conference_members`` empty until the comet server restarts (quirk ``comet_esl_link_not_restored``;
the lenient profile connects again at the next query).  ``esl_send_recv`` has no timeout in the
original; here a node that does not answer within ``timeout`` seconds counts as a lost link.

The CometQL executor is synchronous, so the ESL round trips happen just before a statement that reads
``conference_members`` (:meth:`EslLinks.prefetch`, which the CometQL server awaits) and the executor
reads the answers (:meth:`EslLinks.xml_list`).  Every node's answer is fetched, though the original
asks only the nodes the statement needs: the result is the same, the cost is a round trip per node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from emulator.cometql.conference import FreeswitchNode
from emulator.freeswitch.esl_client import EslClient, EslConnectionError
from emulator.journal import Journal
from emulator.net.network import Network
from emulator.profiles import Quirk

if TYPE_CHECKING:  # pragma: no cover
    from emulator.profiles import Profile

__all__ = ["EslLinks"]


class _Link:
    def __init__(self, node: FreeswitchNode) -> None:
        self.node = node
        self.client: EslClient | None = None
        self.tried = False          # CppComet's "connected" flag: set before the first attempt
        self.dead = False
        self.error = ""             # why the link is down (the xml_list_failed record says it)


class EslLinks:
    def __init__(self, nodes: list[FreeswitchNode], network: Network, journal: Journal, profile: Profile, *,
                 timeout: float = 5.0) -> None:
        self.network = network
        self.journal = journal
        self.profile = profile
        self.timeout = timeout
        self._links = {node.esl_id: _Link(node) for node in nodes}
        self._answers: dict[str, str | None] = {}
        self._lock = trio.Lock()

    async def prefetch(self) -> None:
        """Ask every node for ``conference xml_list`` (over its one link) before the statement runs."""
        async with self._lock:
            answers: dict[str, str | None] = {}
            for esl_id, link in self._links.items():
                answers[esl_id] = await self._ask(link)
            self._answers = answers

    def xml_list(self, node: FreeswitchNode) -> str | None:
        """The executor's ``xml_list`` callable: the answer fetched by :meth:`prefetch`."""
        if node.esl_id not in self._links:
            return None
        answer = self._answers.get(node.esl_id)
        if answer is None:
            link = self._links[node.esl_id]
            raise ConnectionError(link.error or f"no ESL link to {node.server}:{node.esl_port}")
        return answer

    async def _ask(self, link: _Link) -> str | None:
        node = link.node
        if link.dead and self.profile.on(Quirk.COMET_ESL_LINK_NOT_RESTORED):
            return None
        if link.client is None or link.client.closed:
            if link.tried and self.profile.on(Quirk.COMET_ESL_LINK_NOT_RESTORED):
                link.dead = True
                link.error = link.error or (f"the ESL link to {node.server}:{node.esl_port} was lost and is not "
                                             "made again")
                return None
            link.tried = True
            try:
                link.client = await EslClient.connect(self.network, node.server, node.esl_port, node.esl_password,
                                                      client="comet", timeout=self.timeout)
            except EslConnectionError as exc:
                link.dead, link.error = True, str(exc)
                return None
            link.dead, link.error = False, ""
        try:
            with trio.fail_after(self.timeout):
                return await link.client.api("conference xml_list")
        except (EslConnectionError, trio.TooSlowError) as exc:
            await link.client.close()
            link.dead = True
            link.error = str(exc) if isinstance(exc, EslConnectionError) else f"ESL {node.esl_id}: no answer"
            return None

    async def close(self) -> None:
        for link in self._links.values():
            if link.client is not None:
                await link.client.close()

    def comet_restarted(self) -> None:
        """A comet server restart makes every link anew (lazily, at the next query)."""
        for link in self._links.values():
            link.client = None
            link.tried = link.dead = False
