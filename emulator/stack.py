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

import random
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from dataclasses import dataclass, field
from typing import AsyncIterator

import trio

from emulator.clock import WallClock
from emulator.comet.directory import DirectoryServer, directory_password
from emulator.comet.hub import QUEUE_EXPIRY, Hub
from emulator.comet.server import CometServer
from emulator.cometql.conference import ConferenceService, FreeswitchNode
from emulator.cometql.server import CometQLServer
from emulator.cometql.tables import Executor
from emulator.config import Config
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.conference_profiles import load_conference_profiles
from emulator.freeswitch.esl import EslServer
from emulator.freeswitch.media import link_presets
from emulator.freeswitch.sip_core import SipCore
from emulator.freeswitch.sip_transport import SipTcpTransport, SipUdpTransport, SipWebSocketTransport
from emulator.freeswitch.tls import Certificates, ensure_certificates
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
    conference: ConferenceService | None = None
    directory: DirectoryServer | None = None
    bridge: Bridge | None = None                  # the fake FreeSWITCH's mod_conference
    sip: SipCore | None = None                    # its SIP side
    esl: EslServer | None = None
    certificates: Certificates | None = None

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
    temp_dirs: list[tempfile.TemporaryDirectory] = []
    stack: Stack | None = None
    try:
        async with trio.open_nursery() as nursery:
            stack = Stack(config, network, profile, clock, store, journal, hub, comet, cometql, nursery,
                          conference=conference, directory=directory)
            await nursery.start(journal.run_flusher)
            nursery.start_soon(_housekeeping, hub)
            stack.ports["ws"] = await _serve(nursery, comet, config.host, config.ports["ws"])
            stack.ports["cometql"] = await _serve(nursery, cometql, config.host, config.ports["cometql"])
            stack.ports["directory"] = await _serve(nursery, directory, config.host, config.ports["directory"])
            if config.freeswitch_emulated:
                await _start_freeswitch(stack, temp_dirs)
            journal.record("stack", "ready", data=str(stack.ready_line()))
            try:
                yield stack
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if stack is not None and stack.bridge is not None:
            stack.bridge.close()  # closes recordings still open
        journal.close()
        store.close()
        for d in temp_dirs:
            d.cleanup()


async def _serve(nursery: trio.Nursery, server, host: str, port: int) -> int:
    """Start a listener-owning service in the nursery; the port it is bound to."""
    await nursery.start(server.serve, host, port)
    assert server.listener is not None
    return server.listener.endpoint.port


def _data_dir(config: Config, setting: str, name: str, temp_dirs: list) -> Path:
    if setting:
        return Path(setting)
    if config.state != ":memory:":
        return Path(config.state).resolve().parent / name
    temp = tempfile.TemporaryDirectory(prefix=f"cometbench-{name}-")
    temp_dirs.append(temp)
    return Path(temp.name)


async def _start_freeswitch(stack: Stack, temp_dirs: list) -> None:
    """The fake FreeSWITCH node: mod_conference, SIP over WSS/WS + UDP/TCP, ESL; registered as the
    comet server's ``[sip] freeswitch`` node unless nodes are configured explicitly."""
    config, network, journal, nursery = stack.config, stack.network, stack.journal, stack.nursery
    rng = random.Random(config.seed)
    public_host = config.sip_public_host or config.host
    certs = ensure_certificates(_data_dir(config, config.certs_dir, "certs", temp_dirs), [public_host])
    profiles = load_conference_profiles(config.conference_profiles or None,
                                        variables={"domain": config.fs_domain, "domain_name": config.fs_domain})
    link_presets_ = link_presets()
    if config.media_link not in link_presets_:
        raise ValueError(f"unknown media_link {config.media_link!r}; known: {', '.join(sorted(link_presets_))}")
    link = link_presets_[config.media_link]
    bridge = Bridge(profiles, domain=config.fs_domain, clock=stack.clock, rng=random.Random(rng.getrandbits(64)),
                    profile=stack.profile, recordings_dir=_data_dir(config, config.recordings_dir, "recordings",
                                                                     temp_dirs),
                    rtp_timeout=config.rtp_timeout, journal=journal, ipv4=config.host)
    core = SipCore(bridge, lambda user: directory_password(stack.store, user), rng=random.Random(rng.getrandbits(64)),
                   journal=journal, host=public_host, media_fingerprint=certs.media_fingerprint,
                   media_ip=config.host if ":" not in config.host else "127.0.0.1",
                   answer_delay=config.sip_answer_delay, link_for=lambda flow: link)
    esl = EslServer(bridge, network, journal, password=config.esl_password,
                    auth_timeout=config.esl_auth_timeout, idle_timeout=config.esl_idle_timeout)
    stack.bridge, stack.sip, stack.esl, stack.certificates = bridge, core, esl, certs
    await nursery.start(bridge.run)
    await nursery.start(core.run)
    ws = SipWebSocketTransport(core, network, journal,
                               tls_context=certs.server_context() if config.sip_tls else None,
                               handshake_timeout=config.handshake_timeout, idle_timeout=config.sip_ws_idle_timeout)
    stack.ports["sip_ws"] = await _serve(nursery, ws, config.host, config.ports["sip_ws"])
    core.port = config.sip_public_port or stack.ports["sip_ws"]
    tcp = SipTcpTransport(core, network, journal, head_timeout=config.sip_tcp_head_timeout,
                          idle_timeout=config.sip_tcp_idle_timeout)
    sip_port = await _serve(nursery, tcp, config.host, config.ports["sip"])
    # UDP and TCP share the number, as 5060 does
    await nursery.start(SipUdpTransport(core, network, journal).serve, config.host, sip_port)
    stack.ports["sip"] = sip_port
    stack.ports["esl"] = await _serve(nursery, esl, config.host, config.ports["esl"])
    conference = stack.conference
    if conference is not None and not config.freeswitch:
        node = FreeswitchNode(server=config.host, esl_port=stack.ports["esl"], esl_password=config.esl_password,
                              ws_port=core.port, ws_host=public_host)
        conference.nodes = [node]
        conference.xml_list = lambda asked: bridge.api("conference xml_list") if asked.esl_id == node.esl_id else None


async def _housekeeping(hub: Hub) -> None:
    while True:
        await trio.sleep(QUEUE_EXPIRY)
        hub.housekeeping()
