"""Deterministic partitioning of a run by call.

A run's **plan** is its list of calls in order: every scenario named (or of the pack), each
``repeat`` times -- ``[(a, 0), (a, 1), ..., (b, 0), ...]`` -- so ``--repeat 30`` of one scenario is 30
calls, and the call index is a call's position in that list.  Shard ``i`` of ``N`` runs the calls

    floor(i * R / N) .. floor((i + 1) * R / N) - 1

of the ``R`` calls: contiguous ranges whose sizes differ by at most one, which cover ``0 .. R - 1``
exactly once for any ``R >= 0`` and ``N >= 1`` (a shard may be empty when ``N > R``).

Nothing a call does depends on ``i`` or ``N``: its scenario seed comes from the run seed and its
repetition (:func:`bench.scenario.runner.scenario_seed`), every actor's generator from that seed and
the actor's name (:func:`bench.actors.participant.actor_rng`), the trio scheduler's order and the
journal run id from the seed and the call index.  So the union of the shards is the same workload as
one unsharded run, call for call.

The partition's identity is recorded in each shard's run directory (report.json ``shard``): the index
and count, ``R``, the call range, and the plan in a compact form (the scenario names in order and
``repeat``; the plan is their product) with a digest of the scenario files' sources, so ``cometbench
merge`` can refuse shards of different runs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ShardSpec", "ShardArgError", "call_range", "parse_shard", "plan_digest", "plan_names"]

_SHARD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*|\d+)\s*/\s*(\d+)\s*$")


class ShardArgError(ValueError):
    """A ``--shard`` / ``--shards`` value that cannot be used; the message says why."""


def call_range(index: int, count: int, total: int) -> range:
    """The calls of shard ``index`` of ``count`` among ``total`` calls (see the module docstring)."""
    if count < 1:
        raise ValueError(f"a run has at least one shard, not {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    if total < 0:
        raise ValueError(f"a run cannot have {total} calls")
    return range(index * total // count, (index + 1) * total // count)


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (``--shard index/count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardArgError(f"a run has at least one shard, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardArgError(f"shard index {self.index} is not in 0..{self.count - 1} (of {self.count} shards)")

    def calls(self, total: int) -> range:
        return call_range(self.index, self.count, total)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, environ: dict[str, str] | None = None) -> ShardSpec:
    """``INDEX/N``; ``INDEX`` is a number or the name of an environment variable that holds one
    (``JOB_COMPLETION_INDEX/10`` in a Kubernetes Indexed Job)."""
    env = os.environ if environ is None else environ
    match = _SHARD.match(text or "")
    if not match:
        raise ShardArgError(f"--shard expects INDEX/N (e.g. 0/4, or JOB_COMPLETION_INDEX/4), got {text!r}")
    raw_index, raw_count = match.groups()
    if raw_index.isdigit():
        index = int(raw_index)
    else:
        value = env.get(raw_index)
        if value is None:
            raise ShardArgError(f"--shard {text}: the environment variable {raw_index} is not set")
        if not value.strip().isdigit():
            raise ShardArgError(f"--shard {text}: {raw_index}={value!r} is not a shard index")
        index = int(value.strip())
    return ShardSpec(index, int(raw_count))


def plan_names(specs: Sequence) -> list[str]:
    """The scenario names of a run in plan order (its plan is these, each ``repeat`` times)."""
    return [spec.name for spec in specs]


def plan_digest(specs: Iterable, repeat: int) -> str:
    """SHA-256 over what fixes the plan and what each call runs: ``repeat``, and per scenario its
    name and the bytes of its file (so two shards that ran different versions of a story differ)."""
    h = hashlib.sha256(f"repeat={repeat}\n".encode())
    for spec in specs:
        h.update(f"scenario={spec.name}\n".encode())
        path = getattr(spec, "path", None)
        try:
            h.update(path.read_bytes() if path is not None else b"")
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\n")
    return h.hexdigest()
