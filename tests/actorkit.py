"""Shared helpers for the actor tests: a stack with a Target, a doctor and a patient, a call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from bench.actors.participant import Participant, Target, open_participant
from emulator.config import Config
from emulator.stack import open_stack

DEV = 15
ROOM = "101"
CONF = f"{DEV}*{ROOM}-FSdefaultDomain"
DOCTOR, PATIENT = 501, 502


def config(**kw: Any) -> Config:
    cfg = Config(**kw)
    cfg.free_ports()
    return cfg


@asynccontextmanager
async def stack_and_target(network, **config_kw: Any) -> AsyncIterator[tuple[Any, Target]]:
    async with open_stack(config(**config_kw), network=network) as stack:
        yield stack, Target.from_stack(stack, dev_id=DEV)


@asynccontextmanager
async def doctor_and_patient(target: Target, network, *, seed: int = 1, doctor: dict | None = None,
                             patient: dict | None = None, **common: Any
                             ) -> AsyncIterator[tuple[Participant, Participant]]:
    async with AsyncExitStack() as exits:
        d = await exits.enter_async_context(open_participant(
            target, network, user_id=DOCTOR, role="doctor", actor="doctor", seed=seed, **{**common, **(doctor or {})}))
        p = await exits.enter_async_context(open_participant(
            target, network, user_id=PATIENT, role="patient", actor="patient", seed=seed,
            **{**common, **(patient or {})}))
        yield d, p


async def in_call(doctor: Participant, patient: Participant, room: str = ROOM, *, timeout: float = 30) -> None:
    """Both pages open; the doctor joins first (alone, no onCallStart yet), then the patient; both
    reach onCallStart."""
    await doctor.open_page()
    await patient.open_page()
    await doctor.join(room)
    await doctor.wait_mark("media_self", timeout=timeout)
    await patient.join(room)
    await patient.wait_call_start(timeout=timeout)
    await doctor.wait_call_start(timeout=timeout)


def members_of(stack, user_id: int | None = None) -> list:
    members = stack.bridge.members(CONF)
    if user_id is None:
        return members
    return [m for m in members if m.channel.caller_id_name == f"{DEV:06d}{user_id}"]


def callbacks(participant: Participant, name: str) -> list[dict]:
    """Every app callback ``name`` the participant's pages fired (all pages, in order)."""
    return [arg for page in participant.pages for _, cb, arg in page.video.callbacks if cb == name]


def journal_marks(stack, actor: str | None = None) -> list[dict]:
    out = [json.loads(e["data"]) for e in stack.journal.entries(service="bench", kind="mark")]
    return [m for m in out if actor is None or m["actor"] == actor]


def sent_events(participant: Participant, event: str) -> list[dict]:
    """Distinct callPipe messages (by _cometApi_uuid) the participant's pages sent for ``event``."""
    seen: dict[str, dict] = {}
    for page in participant.pages:
        for text in page.comet.sent_frames("web_pipe2"):
            _, _pipe, name, _star, body = text.split("\n", 4)
            if name == event:
                data = json.loads(body)
                seen.setdefault(data["_cometApi_uuid"], data)
    return list(seen.values())


async def until(predicate, timeout: float = 10.0, step: float = 0.01) -> None:
    """Poll server-side state (real-time tests must not rely on fixed sleeps)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)
