"""Slow, idle and flood clients on every listener at once; normal clients stay served.

Every TCP listener (comet WebSocket, CometQL, directory, SIP over WSS and TCP, ESL) gets, at the
same time: slowloris clients (a plausible start of the protocol, one byte every 2 s), clients
that connect and say nothing, and a flood of normal clients; SIP over UDP gets a datagram flood.
Meanwhile a normal client of each listener (``tests/hostile.py``) runs again and again and must
be answered quickly.  Every slow and idle connection must be closed by the listener's start /
handshake timeout, and afterwards (OS sockets) the process holds no more descriptors than before.

Two variants: OS sockets with short configured timeouts (3 s; descriptors counted in
/proc/self/fd), and the in-memory network under virtual time with the default timeouts (10 s;
ESL 25 s) and larger crowds.
"""

from __future__ import annotations

import os
import resource

import pytest
import trio

from emulator.config import Config
from emulator.net.network import Endpoint, OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from tests.hostile import PROBES, Ports, idle, sip_options, slow

TCP_SERVICES = ("ws", "cometql", "directory", "sip_ws", "sip", "esl")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")


async def attack(p: Ports, *, slow_n: int, idle_n: int, flood_n: int, udp_n: int,
                 timeouts: dict[str, float], slack: float, probe_every: float, probe_budget: float) -> None:
    """``slack``: how late a close may be seen (the accept of a flooded listener lags the connect)."""
    closes: dict[tuple[str, str], list[float]] = {}
    probe_times: dict[str, list[float]] = {name: [] for name in PROBES}
    probe_errors: list[str] = []
    flood_errors: list[str] = []
    done = trio.Event()

    async def record(key: tuple[str, str], fn, *args) -> None:
        closes.setdefault(key, []).append(await fn(*args))

    async def flood(service: str) -> None:
        probe = PROBES[service]
        try:
            await probe(p)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            flood_errors.append(f"{service}: {exc!r}")

    async def udp_flood() -> None:
        endpoint = await p.network.udp_socket("flood", p.host, 0)
        server = Endpoint(p.host, p.ports["sip"])
        for i in range(udp_n):
            await endpoint.sendto(b"\x00garbage %d" % i if i % 2 else sip_options("UDP", 100000 + i), server)
        await endpoint.aclose()

    async def probes() -> None:
        while not done.is_set():
            for name, probe in PROBES.items():
                start = trio.current_time()
                try:
                    with trio.fail_after(probe_budget * 4):
                        await probe(p)
                except Exception as exc:  # noqa: BLE001
                    probe_errors.append(f"{name}: {exc!r}")
                probe_times[name].append(trio.current_time() - start)
            await trio.sleep(probe_every)

    async with trio.open_nursery() as outer:
        outer.start_soon(probes)
        async with trio.open_nursery() as nursery:
            for service in TCP_SERVICES:
                for _ in range(slow_n):
                    nursery.start_soon(record, (service, "slow"), slow, p, service)
                for _ in range(idle_n):
                    nursery.start_soon(record, (service, "idle"), idle, p, service)
                for _ in range(flood_n):
                    nursery.start_soon(flood, service)
            nursery.start_soon(udp_flood)
        done.set()

    assert not probe_errors, probe_errors[:5]
    assert not flood_errors, flood_errors[:5]
    for name, times in probe_times.items():
        assert times and max(times) < probe_budget, (name, max(times))
    for (service, kind), seconds in closes.items():
        expected = timeouts[service]
        assert len(seconds) == (slow_n if kind == "slow" else idle_n)
        assert all(expected - 0.1 <= s <= expected + slack for s in seconds), \
            (service, kind, expected, sorted(seconds)[:3], sorted(seconds)[-3:])


@pytest.mark.slow
async def test_slow_idle_and_flood_together_over_os_sockets():
    raise_fd_limit(4096)
    cfg = Config(journal=False, handshake_timeout=3.0, sip_tcp_head_timeout=3.0, esl_auth_timeout=3.0)
    cfg.free_ports()
    network = OSNetwork()
    async with open_stack(cfg, network=network) as stack:
        p = Ports(network, stack.ports, sip_tls=True)
        await p.prepare()
        for probe in PROBES.values():  # warm up: first TLS context, imports
            await probe(p)
        await trio.sleep(0.2)
        before = open_fds()
        with trio.fail_after(60):
            await attack(p, slow_n=12, idle_n=12, flood_n=25, udp_n=400,
                         timeouts={s: 3.0 for s in TCP_SERVICES}, slack=4.0, probe_every=0.2, probe_budget=3.0)
        with trio.fail_after(10):
            while open_fds() > before:
                await trio.sleep(0.1)
        assert open_fds() <= before
        assert stack.esl is not None and stack.esl.connections == 0
        assert stack.comet.active == 0 and stack.cometql.sessions == {}


@pytest.mark.slow
async def test_slow_idle_and_flood_together_in_virtual_time(autojump_clock):
    cfg = Config(journal=False)
    cfg.free_ports()
    network = VirtualNetwork()
    async with open_stack(cfg, network=network) as stack:
        p = Ports(network, stack.ports, sip_tls=True)
        await p.prepare()
        timeouts = {s: 10.0 for s in TCP_SERVICES}
        timeouts["esl"] = 25.0  # mod_event_socket's auth limit
        await attack(p, slow_n=40, idle_n=40, flood_n=60, udp_n=2000,
                     timeouts=timeouts, slack=0.01, probe_every=1.0, probe_budget=0.5)
        assert stack.esl is not None and stack.esl.connections == 0
        assert stack.comet.active == 0 and stack.cometql.sessions == {}
