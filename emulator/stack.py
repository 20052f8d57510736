"""The whole emulator from one config, in one nursery: the single place to see what runs.

::

    async with open_stack(Config(), network=VirtualNetwork()) as stack:
        stack.ports["ws"]        # bound port of each running service
        stack.hub.publish(...)   # the comet hub API
        stack.journal.entries()  # what happened

Leaving the block cancels every service task and closes the state and the journal; nothing
outlives the scope.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

import trio

from emulator.clock import WallClock
from emulator.comet.directory import DirectoryServer
from emulator.comet.hub import QUEUE_EXPIRY, Hub
from emulator.comet.server import CometServer
from emulator.cometql.conference import ConferenceService
from emulator.cometql.server import CometQLServer
from emulator.cometql.tables import Executor
from emulator.config import Config
from emulator.journal import Journal
from emulator.net.network import Network, OSNetwork
from emulator.profiles import Profile, get_profile
from emulator.state import StateStore


@dataclass
class Stack:
    config: Config
    network: Network
    profile: Profile
    clock: WallClock
    store: StateStore
    journal: Journal
    hub: Hub
    comet: CometServer
    cometql: CometQLServer
    nursery: trio.Nursery
    ports: dict[str, int] = field(default_factory=dict)
    conference: ConferenceService | None = None   # its .xml_list is for the FreeSWITCH side to set
    directory: DirectoryServer | None = None

    def ready_line(self) -> dict:
        """The JSON object ``cometbench serve`` prints once listening."""
        return {"ready": True, "host": self.config.host, "profile": self.profile.name, **self.ports}


def build_profile(config: Config) -> Profile:
    profile = get_profile(config.profile)
    return profile.with_quirks(**config.quirks) if config.quirks else profile


@asynccontextmanager
async def open_stack(config: Config, *, network: Network | None = None, epoch: float | None = None
                     ) -> AsyncIterator[Stack]:
    network = network or OSNetwork()
    profile = build_profile(config)
    clock = WallClock(epoch)
    store = StateStore(config.state)
    journal = Journal(config.resolved_journal_path(), enabled=config.journal, seed=config.seed,
                      profile=profile.name, clock="virtual" if network.kind == "virtual" else "real",
                      now=clock.now)
    hub = Hub(store, profile, password=config.password, clock=clock, journal=journal)
    comet = CometServer(hub, network, profile, journal, handshake_timeout=config.handshake_timeout,
                        node_name=config.node_name)
    conference = ConferenceService(hub, config.freeswitch, pipesalt=config.pipesalt)
    executor = Executor(hub, profile, conference=conference)
    directory = DirectoryServer(store, network, journal, head_timeout=config.handshake_timeout)
    cometql = CometQLServer(executor, network, profile, journal, password=config.password,
                            handshake_timeout=config.handshake_timeout)
    executor.sessions_of = cometql.sessions_of
    try:
        async with trio.open_nursery() as nursery:
            stack = Stack(config, network, profile, clock, store, journal, hub, comet, cometql, nursery,
                          conference=conference, directory=directory)
            await nursery.start(journal.run_flusher)
            nursery.start_soon(_housekeeping, hub)
            await nursery.start(comet.serve, config.host, config.ports["ws"])
            assert comet.listener is not None
            stack.ports["ws"] = comet.listener.endpoint.port
            await nursery.start(cometql.serve, config.host, config.ports["cometql"])
            assert cometql.listener is not None
            stack.ports["cometql"] = cometql.listener.endpoint.port
            await nursery.start(directory.serve, config.host, config.ports["directory"])
            assert directory.listener is not None
            stack.ports["directory"] = directory.listener.endpoint.port
            journal.record("stack", "ready", data=str(stack.ready_line()))
            try:
                yield stack
            finally:
                nursery.cancel_scope.cancel()
    finally:
        journal.close()
        store.close()


async def _housekeeping(hub: Hub) -> None:
    while True:
        await trio.sleep(QUEUE_EXPIRY)
        hub.housekeeping()
