"""The whole emulator from one config, in one nursery: the single place to see what runs.

::

    async with open_stack(Config(), network=VirtualNetwork()) as stack:
        stack.ports["ws"]        # bound port of each running service
        stack.hub.publish(...)   # the comet hub API
        stack.journal.entries()  # what happened

Leaving the block cancels every service task and closes the state and the journal; nothing
outlives the scope.

Each listening service runs in its own cancel scope (:class:`Service`), so the fault controls
(``stack.faults``, :mod:`emulator.faults`) can stop one and start it again on the same port, as a
process restart does, without leaving a task behind.  The network gets a link table
(``stack.links``, :mod:`emulator.net.links`) if it has none, and the table's timers run in the
stack's nursery.

In virtual time (a :class:`~emulator.net.network.VirtualNetwork`) everything that would otherwise
differ between two runs comes from the seed or the trio clock: the journal's run id, the wall-clock
epoch (``config.epoch``), callKeys and every other UUID (:mod:`emulator.ids`), the MySQL scramble,
and the certificates' lengths, so the same seed gives the same journal byte for byte.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from emulator.clock import Timers, WallClock
from emulator.comet.directory import DirectoryServer, directory_password
from emulator.comet.hub import QUEUE_EXPIRY, Hub
from emulator.comet.server import CometServer
from emulator.cometql.conference import ConferenceService, FreeswitchNode
from emulator.cometql.esl_links import EslLinks
from emulator.cometql.server import CometQLServer
from emulator.cometql.tables import Executor
from emulator.config import Config
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.conference_profiles import load_conference_profiles
from emulator.freeswitch.directory_client import DirectoryClient, parse_directory_url
from emulator.freeswitch.esl import EslServer
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.flow import restart_ids as restart_flow_ids
from emulator.freeswitch.media import link_presets
from emulator.freeswitch.media_link import MediaLinks
from emulator.freeswitch.real_media import RealMedia
from emulator.freeswitch.sip_core import SipCore
from emulator.freeswitch.sip_transport import SipTcpTransport, SipUdpTransport, SipWebSocketTransport
from emulator.freeswitch.tls import Certificates, ensure_certificates
from emulator.ids import Ids
from emulator.journal import Journal
from emulator.net.links import Links
from emulator.net.network import Network, OSNetwork
from emulator.profiles import Profile, Quirk, get_profile
from emulator.state import StateStore


class Serve(Protocol):
    """A listener-owning service's ``serve``: bind ``host:port``, report the bound port through
    ``task_status.started(port)`` (:meth:`emulator.net.network.Network.listen_and_serve`), serve
    until cancelled."""

    def __call__(self, host: str, port: int, *, task_status: trio.TaskStatus[int]) -> Awaitable[None]: ...


class Service:
    """One listening service in its own cancel scope: :meth:`stop` cancels it (its listener closes,
    its connections drop) and waits until it is gone; :meth:`start` binds it again on the same port."""

    def __init__(self, name: str, serve: Serve, host: str, port: int, *, nursery: trio.Nursery) -> None:
        self.name = name
        self._serve = serve
        self.host = host
        self.port = port
        self._nursery = nursery
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self) -> int:
        """Bind and serve; the bound port (a port of 0 becomes the one the system chose, so a
        restart binds the same one).  A failure to bind is a :class:`BindError` naming the service."""
        try:
            port: int = await self._nursery.start(self._run)
        except OSError as exc:  # nursery.start raises what the task raised before it started
            raise BindError(self.name, self.host, self.port, exc) from exc
        self.port = port
        return port

    async def _run(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        done = self._done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await self._serve(self.host, self.port, task_status=task_status)
        finally:
            self._scope = None
            done.set()

    async def stop(self) -> None:
        scope, done = self._scope, self._done
        if scope is not None and done is not None:
            scope.cancel()
            await done.wait()


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
    services: dict[str, Service] = field(default_factory=dict)   # "ws", "cometql", "sip_ws", ...
    links: Links | None = None                    # the network's link conditions
    media_links: MediaLinks | None = None         # the bridge's media paths on those links
    real_media: RealMedia | None = None           # media = "real": the media worker and its glue
    ids: Ids | None = None
    faults: Any = None                            # emulator.faults.Faults
    esl_links: EslLinks | None = None             # the comet side's ESL links to external FreeSWITCH nodes

    def ready_line(self) -> dict:
        """The JSON object ``cometbench serve`` prints once listening."""
        return {"ready": True, "host": self.config.host, "profile": self.profile.name, **self.ports}


class BindError(OSError):
    """A service could not listen on its address: which service, which host and port, and why."""

    def __init__(self, service: str, host: str, port: int, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.service, self.host, self.port, self.error = service, host, port, error

    def __str__(self) -> str:
        return f"{self.service} cannot listen on {self.host}:{self.port}: {self.error.strerror or self.error}"


def build_profile(config: Config) -> Profile:
    profile = get_profile(config.profile)
    return profile.with_quirks(**config.quirks) if config.quirks else profile


@asynccontextmanager
async def open_stack(config: Config, *, network: Network | None = None, epoch: float | None = None
                     ) -> AsyncIterator[Stack]:
    config.check_parts()
    network = network or OSNetwork()
    virtual = network.kind == "virtual"
    if config.media == "real" and virtual and config.freeswitch_emulated:
        raise ValueError("media = \"real\" needs real time and the OS network (not a virtual network)")
    if network.links is None:
        network.links = Links(seed=config.seed)
    links = network.links
    profile = build_profile(config)
    if epoch is None and virtual:
        epoch = config.epoch   # a virtual run's wall clock starts at a fixed time: reproducible
    clock = WallClock(epoch)
    # virtual time: every identifier comes from the seed and the clock (a real run keeps real UUIDs)
    ids = Ids(random.Random(f"{config.seed}:ids"), clock.now) if virtual else None
    if virtual:
        restart_flow_ids()
    store = StateStore(config.state)
    try:
        journal = Journal(config.resolved_journal_path(), enabled=config.journal, seed=config.seed,
                          profile=profile.name, clock="virtual" if virtual else "real",
                          now=clock.now, run_id=config.run_id or (ids.hex(12) if ids is not None else None))
    except BaseException:
        store.close()
        raise
    hub = Hub(store, profile, password=config.password, clock=clock, journal=journal)
    if ids is not None:
        hub.new_uuid = ids.uuid1
    comet = CometServer(hub, network, profile, journal, handshake_timeout=config.handshake_timeout,
                        node_name=config.node_name)
    conference = ConferenceService(hub, config.freeswitch, pipesalt=config.pipesalt)
    if ids is not None:
        conference.new_call_key = ids.uuid1
    executor = Executor(hub, profile, conference=conference)
    directory = DirectoryServer(store, network, journal, head_timeout=config.handshake_timeout)
    cometql = CometQLServer(executor, network, profile, journal, password=config.password,
                            handshake_timeout=config.handshake_timeout)
    if ids is not None:
        cometql.randbytes = ids.randbytes
    executor.sessions_of = cometql.sessions_of
    temp_dirs: list[tempfile.TemporaryDirectory] = []
    stack: Stack | None = None
    try:
        async with trio.open_nursery() as nursery:
            stack = Stack(config, network, profile, clock, store, journal, hub, comet, cometql, nursery,
                          conference=conference, directory=directory, links=links, ids=ids)
            await nursery.start(journal.run_flusher)
            await nursery.start(links.run)
            if config.comet_emulated:
                nursery.start_soon(_housekeeping, hub)
                stack.ports["ws"] = await _serve(stack, comet.serve, config.host, config.ports["ws"], "ws")
                stack.ports["cometql"] = await _serve(stack, cometql.serve, config.host, config.ports["cometql"],
                                                      "cometql")
                stack.ports["directory"] = await _serve(stack, directory.serve, config.host, config.ports["directory"],
                                                        "directory")
                if config.freeswitch:   # external FreeSWITCH nodes: conference_members asks them over ESL
                    stack.esl_links = EslLinks(conference.nodes, network, journal, profile)
                    conference.xml_list = stack.esl_links.xml_list
                    cometql.prepare_members = stack.esl_links.prefetch
            if config.freeswitch_emulated:
                await _start_freeswitch(stack, temp_dirs)
            from emulator.faults import Faults  # the fault controls sit on top of the stack

            stack.faults = Faults(stack)
            journal.record("stack", "ready", data=str(stack.ready_line()))
            try:
                yield stack
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if stack is not None and stack.esl_links is not None:
            with trio.CancelScope(shield=True):
                await stack.esl_links.close()
        if stack is not None and stack.media_links is not None:
            stack.media_links.close()
        if stack is not None and stack.bridge is not None:
            stack.bridge.close()  # closes recordings still open
        journal.close()
        store.close()
        for d in temp_dirs:
            d.cleanup()


async def _serve(stack: Stack, serve: Serve, host: str, port: int, service: str) -> int:
    """Start a listener-owning service as a :class:`Service` of the stack; the port it is bound to.  A
    failure to bind (port in use, no permission, address not on this machine) is a :class:`BindError`
    naming it.  A later restart binds the same port."""
    handle = Service(service, serve, host, port, nursery=stack.nursery)
    bound = await handle.start()
    stack.services[service] = handle
    if stack.links is not None and service in _LINK_SERVICES:
        stack.links.learn_service(bound, _LINK_SERVICES[service])
    return bound


#: Stack service name -> the link table's service (emulator/net/links.py) for streams to its port.
#: UDP is not listed: datagrams are matched by their own endpoint, not by a learnt port.
_LINK_SERVICES = {"ws": "comet", "cometql": "cometql", "directory": "directory", "sip_ws": "sip_ws",
                  "sip (TCP)": "sip", "esl": "esl"}


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
    certs = ensure_certificates(_data_dir(config, config.certs_dir, "certs", temp_dirs), [public_host],
                                fixed_lengths=network.kind == "virtual")
    links = stack.links
    assert links is not None

    def client_of(flow: Flow) -> str:
        return flow.client or links.client_of(flow.peer)

    profiles = load_conference_profiles(config.conference_profiles or None,
                                        variables={"domain": config.fs_domain, "domain_name": config.fs_domain})
    link_presets_ = link_presets()
    if config.media_link not in link_presets_:
        raise ValueError(f"unknown media_link {config.media_link!r}; known: {', '.join(sorted(link_presets_))}")
    link = link_presets_[config.media_link]
    # one timer facility for the node (mod_conference and the SIP core), on the stack's clock
    timers = Timers(stack.clock.monotonic)
    bridge = Bridge(profiles, domain=config.fs_domain, clock=stack.clock, rng=random.Random(rng.getrandbits(64)),
                    profile=stack.profile, recordings_dir=_data_dir(config, config.recordings_dir, "recordings",
                                                                     temp_dirs),
                    rtp_timeout=config.rtp_timeout, journal=journal, ipv4=config.host, timers=timers)
    media_links = MediaLinks(links, bridge, default=link, client_of=client_of)
    lookup = None
    if config.directory_url:   # mod_xml_curl over HTTP to a comet server's directory endpoint
        directory_client = DirectoryClient(parse_directory_url(config.directory_url), network, journal,
                                           domain=config.fs_domain)
        lookup = directory_client.password
    core = SipCore(bridge, lambda user: directory_password(stack.store, user), rng=random.Random(rng.getrandbits(64)),
                   journal=journal, host=public_host, media_fingerprint=certs.media_fingerprint,
                   media_ip=config.host if ":" not in config.host else "127.0.0.1",
                   answer_delay=config.sip_answer_delay, link_for=media_links.conditions_for,
                   client_of=client_of, keeps_media=media_links.keeps_media, password_lookup=lookup)
    esl = EslServer(bridge, network, journal, password=config.esl_password,
                    auth_timeout=config.esl_auth_timeout, idle_timeout=config.esl_idle_timeout)
    if stack.ids is not None:
        esl.new_uuid = stack.ids.uuid4
    stack.bridge, stack.sip, stack.esl, stack.certificates = bridge, core, esl, certs
    stack.media_links = media_links
    media_links.core = core
    await nursery.start(timers.run)   # the one task that runs the node's timers
    await nursery.start(core.run)     # the SIP core's directory lookups
    if config.media == "real":        # the media worker process: started before the SIP listeners
        from emulator.freeswitch.real_media import RealMedia

        real = RealMedia(bridge, journal, host=core.media_ip)
        await nursery.start(real.run)
        core.real_media = stack.real_media = real
    ws = SipWebSocketTransport(core, network, journal,
                               tls_context=certs.server_context() if config.sip_tls else None,
                               handshake_timeout=config.handshake_timeout, idle_timeout=config.sip_ws_idle_timeout)
    stack.ports["sip_ws"] = await _serve(stack, ws.serve, config.host, config.ports["sip_ws"], "sip_ws")
    core.port = config.sip_public_port or stack.ports["sip_ws"]
    tcp = SipTcpTransport(core, network, journal, head_timeout=config.sip_tcp_head_timeout,
                          idle_timeout=config.sip_tcp_idle_timeout)
    sip_port = await _serve(stack, tcp.serve, config.host, config.ports["sip"], "sip (TCP)")
    # UDP and TCP share the number, as 5060 does
    await _serve(stack, SipUdpTransport(core, network, journal).serve, config.host, sip_port, "sip (UDP)")
    stack.ports["sip"] = sip_port
    stack.ports["esl"] = await _serve(stack, esl.serve, config.host, config.ports["esl"], "esl")
    conference = stack.conference
    if conference is not None and not config.freeswitch and config.comet_emulated:
        node = FreeswitchNode(server=config.host, esl_port=stack.ports["esl"], esl_password=config.esl_password,
                              ws_port=core.port, ws_host=public_host)
        conference.nodes = [node]
        conference.xml_list = InProcessEslLink(bridge, node, stack.profile)


class InProcessEslLink:
    """The comet server's ESL link to the in-process node: ``api conference xml_list`` answered by
    the bridge directly.  After a FreeSWITCH restart the real comet server's link is dead until the
    comet server itself restarts (spec 4.2; quirk ``comet_esl_link_not_restored``): ``broken`` is
    then True and the node cannot be asked (conference_members is empty)."""

    def __init__(self, bridge: Bridge, node: FreeswitchNode, profile: Profile) -> None:
        self.bridge = bridge
        self.node = node
        self.profile = profile
        self.broken = False

    def __call__(self, asked: FreeswitchNode) -> str | None:
        if asked.esl_id != self.node.esl_id:
            return None
        if self.broken:
            raise ConnectionError(f"the ESL link to {asked.esl_id} was lost when FreeSWITCH restarted "
                                  "and the comet server does not reconnect it")
        return self.bridge.api("conference xml_list")

    def freeswitch_restarted(self) -> None:
        if self.profile.on(Quirk.COMET_ESL_LINK_NOT_RESTORED):
            self.broken = True

    def comet_restarted(self) -> None:
        self.broken = False


async def _housekeeping(hub: Hub) -> None:
    while True:
        await trio.sleep(QUEUE_EXPIRY)
        hub.housekeeping()
