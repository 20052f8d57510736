"""pytest plugin (entry point ``pytest11: cometbench``): the emulator, actors and scenarios in your own tests.

Installing cometbench makes these fixtures available to any pytest suite.  They run on pytest-trio:
mark the tests ``@pytest.mark.trio`` (or set ``trio_mode = true``), and ask for pytest-trio's
``autojump_clock`` to run in **virtual time** (the in-memory network; a 60-minute call takes well
under a second) -- without it they run on loopback sockets in real time.

``cometbench_stack``
    A fresh in-process emulator (``emulator.stack.Stack``) on free ports: the comet server, CometQL,
    the fake FreeSWITCH.  Seed and fidelity profile from ``cometbench_seed`` / ``cometbench_profile``.
``cometbench_scenario``
    A live :class:`bench.scenario.Scenario` on that stack -- ``s.doctor``, ``s.patient``, steps,
    waits, expectations, faults -- for a story told inside the test.  Expectations still unjudged
    when the test ends are judged then (call ``s.verify()`` to judge them earlier).
``cometbench_run``
    ``await cometbench_run("refresh_mid_call")`` runs a scenario of the pack, a scenario file
    (a path) or a story function on its own fresh stack, in the test's trio run and clock, and
    returns its :class:`bench.scenario.ScenarioResult` (``result.passed``, ``result.failure``).
``cometbench_seed`` / ``cometbench_profile``
    ``--cometbench-seed N`` (default 0) and ``--cometbench-profile NAME`` (default cppcomet-4.09);
    override the fixtures to pin them per test.

``examples/test_my_app.py`` is a complete file to copy.  Heavy imports happen inside the fixtures,
so loading the plugin costs a suite that does not use it nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cometbench", "cometbench emulator fixtures")
    group.addoption("--cometbench-seed", type=int, default=0, metavar="N",
                    help="seed of the cometbench_* fixtures (default 0)")
    group.addoption("--cometbench-profile", default="cppcomet-4.09", metavar="NAME",
                    help="fidelity profile of the cometbench_* fixtures: cppcomet-4.09 (default) or lenient")


@pytest.fixture
def cometbench_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--cometbench-seed"))


@pytest.fixture
def cometbench_profile(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--cometbench-profile"))


def _network() -> Any:
    import trio
    import trio.testing

    from emulator.net.network import OSNetwork, VirtualNetwork

    return VirtualNetwork() if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock) else OSNetwork()


@pytest.fixture
async def cometbench_stack(cometbench_seed: int, cometbench_profile: str) -> AsyncIterator[Any]:
    from bench.scenario.runner import VIRTUAL_EPOCH
    from emulator.config import Config
    from emulator.stack import open_stack

    config = Config(seed=cometbench_seed, profile=cometbench_profile)
    config.free_ports()
    network = _network()
    async with open_stack(config, network=network,
                          epoch=VIRTUAL_EPOCH if network.kind == "virtual" else None) as stack:
        yield stack


@pytest.fixture
async def cometbench_scenario(cometbench_stack: Any, cometbench_seed: int, cometbench_profile: str,
                              request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    import trio

    from bench.scenario.story import Scenario

    async with trio.open_nursery() as nursery:
        scenario = Scenario(request.node.name, seed=cometbench_seed, stack=cometbench_stack,
                            network=cometbench_stack.network, nursery=nursery, profile=cometbench_profile,
                            clock="virtual" if cometbench_stack.network.kind == "virtual" else "real")
        try:
            yield scenario
            if any(e.result is None for e in scenario.expectations):
                await scenario.settle()
                scenario.verify()
        finally:
            scenario.close()
            nursery.cancel_scope.cancel()


@pytest.fixture
def cometbench_run(cometbench_seed: int, cometbench_profile: str) -> Callable[..., Any]:
    async def run(scenario: str | Path | Callable[..., Any], *, seed: int | None = None, profile: str | None = None,
                  network: str = "loopback") -> Any:
        from bench.scenario.loader import ScenarioSpec, load, resolve
        from bench.scenario.network import check_network
        from bench.scenario.runner import tell

        check_network(network)
        if callable(scenario):
            source = Path(inspect.getfile(scenario))
            spec = ScenarioSpec(scenario.__name__, source, story=scenario, doc=inspect.getdoc(scenario) or "")
        elif isinstance(scenario, Path) or str(scenario).endswith(".py"):
            spec = load(Path(scenario))
        else:
            (spec,) = resolve([str(scenario)])
        return await tell(spec, seed=cometbench_seed if seed is None else seed,
                          profile=profile or cometbench_profile, network=network)

    return run
