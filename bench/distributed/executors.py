"""Executors: N shards of one run launched, synchronised, collected (and then merged).

``cometbench run ... --shards N --executor ray|local`` turns the run's own command line into N shard
command lines (``--shard i/N --report-dir <dir>/shards/shard-<i> --barrier ...``; options that judge
the whole run -- ``--thresholds``, ``--baseline``, ``--tolerance`` -- are kept for the merge), starts
them with a barrier, waits for all of them, and hands the shard directories to the merge.

**Ray** (the default; ``pip install 'cometbench[ray]'``): one plain Ray task per shard
(:func:`shard_task`), ``max_retries=0`` -- a retried shard would silently run its calls twice --
``scheduling_strategy="SPREAD"`` so that a cluster puts one shard per node as far as it has nodes,
and ``num_cpus`` of ``--cpus-per-shard`` (1 by default).  A task runs the ``cometbench run`` command
in the worker (which calls ``trio.run`` for each call: Ray's own async actors are asyncio-only, so
no actor runs trio), in a temporary directory, and returns the run directory's files as bytes; the
driver writes them under ``<dir>/shards/``.  The barrier is a named asyncio actor
(:class:`bench.distributed.barrier.BarrierActor`).  Without ``--address`` Ray is started on this
machine; ``--address ray://HOST:10001`` (Ray client) or ``HOST:6379`` joins a cluster, whose nodes must
have the same cometbench installed (the merge refuses shards of different versions).  Before that
the driver checks that the address accepts a TCP connection at all (Ray itself would wait 30 s to
2 minutes and then exit the process), and that the cluster has CPUs for every shard at once: shards
wait for each other at the barrier, so a shard that cannot be scheduled until another ends would
hold the start for ever.

**local**: one subprocess per shard (``python -m bench.cli run ...``) with a TCP barrier on
127.0.0.1; each shard's output goes to ``<dir>/shards/shard-<i>.log``.  For tests, and for users
without Ray.

Either way, a shard that dies before the barrier calls the start off for the others (they stop
before their first call), and a shard that fails is named with its reason and the tail of its log;
no merged report is written unless every shard finished.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.distributed.barrier import DEFAULT_LEAD, BarrierActor, TcpBarrierServer

__all__ = ["ExecutorError", "ShardOutcome", "shard_argv", "run_local", "run_ray", "shard_task", "RUN_FILES"]

#: the files of a run directory a Ray task sends back
RUN_FILES = ("report.json", "histograms.hlog", "journal.sqlite", "emulator.log", "report.html", "junit.xml")
#: options of the driver's command line that a shard does not get (option -> takes a value)
DRIVER_OPTIONS = {"--shards": True, "--executor": True, "--address": True, "--cpus-per-shard": True,
                  "--start-lead": True, "--report-dir": True, "--thresholds": True, "--baseline": True,
                  "--tolerance": True, "--shard": True, "--barrier": True, "--start-at": True}


class ExecutorError(Exception):
    """The shards could not be launched at all (Ray missing, a cluster that does not answer ...)."""


@dataclass
class ShardOutcome:
    index: int
    path: Path                  # its run directory
    status: int | None          # the shard's exit status (None: it never ran to an end)
    error: str | None = None    # why it failed as a process / task (not: a scenario failed)
    log: Path | None = None
    host: str | None = None

    def tail(self, lines: int = 3) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def shard_argv(argv: list[str], index: int, count: int, run_dir: Path | None, barrier: str | None) -> list[str]:
    """The driver's ``run`` arguments made into shard ``index``'s (see the module docstring)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = arg.partition("=")
        if name in DRIVER_OPTIONS:
            skip = DRIVER_OPTIONS[name] and not eq
            continue
        out.append(arg)
    out += ["--shard", f"{index}/{count}"]
    if run_dir is not None:
        out += ["--report-dir", str(run_dir)]
    if barrier is not None:
        out += ["--barrier", barrier]
    return out


def shard_dir(report_dir: Path, index: int) -> Path:
    return Path(report_dir) / "shards" / f"shard-{index}"


# --- local: subprocesses -----------------------------------------------------------------------------


def run_local(argv: list[str], count: int, report_dir: Path, *, lead: float = DEFAULT_LEAD,
              env: dict[str, str] | None = None) -> list[ShardOutcome]:
    """Run ``count`` shards as subprocesses of this machine with a TCP barrier; wait for all."""
    server = TcpBarrierServer(count, lead=lead)
    procs: list[tuple[int, subprocess.Popen, Path, Path]] = []
    try:
        (Path(report_dir) / "shards").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = shard_dir(report_dir, i)
            log = Path(report_dir) / "shards" / f"shard-{i}.log"
            command = [sys.executable, "-m", "bench.cli", "run", *shard_argv(argv, i, count, path, server.address)]
            with open(log, "wb") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})})
            procs.append((i, proc, path, log))
        outcomes: dict[int, ShardOutcome] = {}
        while len(outcomes) < count:
            for i, proc, path, log in procs:
                if i in outcomes or proc.poll() is None:
                    continue
                status = proc.returncode
                error = None
                if status < 0:
                    error = f"killed by signal {-status}"
                elif status not in (0, 1, 3):
                    error = f"exited with status {status}"
                if i not in server.status()["arrived"]:
                    server.abort(f"shard {i} ended before the start (status {status})")
                outcomes[i] = ShardOutcome(i, path, status, error, log, socket.gethostname())
            time.sleep(0.05)
        return [outcomes[i] for i in range(count)]
    except BaseException:
        for _, proc, _, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _, _ in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        server.close()


# --- Ray ------------------------------------------------------------------------------------------------


def shard_task(argv: list[str], index: int) -> dict[str, Any]:
    """What one Ray task does: ``cometbench run <argv> --report-dir <temporary>`` in this worker (``argv``
    without the command name), and
    the run directory's files (and the shard's output) as bytes."""
    from bench.cli import main

    work = Path(tempfile.mkdtemp(prefix=f"cometbench-shard-{index}-"))
    run_dir = work / "run"
    log = work / "shard.log"
    try:
        with open(log, "w", encoding="utf-8") as out, redirect_stdout(out), redirect_stderr(out):
            try:
                status = main(["run", *argv, "--report-dir", str(run_dir)])
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - the driver gets the traceback in the shard's log
                traceback.print_exc()
                status = 70
        files: dict[str, bytes] = {}
        journal = run_dir / "journal.sqlite"
        if journal.is_file():
            conn = sqlite3.connect(journal)     # fold a write-ahead log into the file before it travels
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                files[name] = (run_dir / name).read_bytes()
        return {"index": index, "status": status, "host": socket.gethostname(), "files": files,
                "log": log.read_bytes() if log.is_file() else b""}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """An :class:`ExecutorError` unless ``address`` (``ray://HOST:PORT`` or ``HOST:PORT``) accepts TCP."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r}: expected ray://HOST:PORT (Ray client, port 10001) or HOST:PORT "
                            "(the head node's GCS, port 6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExecutorError(f"the Ray cluster at {address} is not reachable ({reason}); no shard was started") from None


def run_ray(argv: list[str], count: int, report_dir: Path, *, address: str | None = None, cpus: float = 1.0,
            lead: float = DEFAULT_LEAD, init_options: dict[str, Any] | None = None) -> list[ShardOutcome]:
    """Run ``count`` shards as Ray tasks (see the module docstring); their files under ``report_dir``."""
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install 'cometbench[ray]' (or use --executor local, "
                            "subprocesses on this machine)") from None
    if address:
        check_reachable(address)
    started_here = not ray.is_initialized()
    if started_here:
        options = {"log_to_driver": False, "include_dashboard": False, "namespace": "cometbench",
                   **(init_options or {})}
        if address:
            options["address"] = address
        try:
            ray.init(**options)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - Ray raises many kinds, and exits on a dead GCS
            raise ExecutorError(f"Ray could not be started or joined{f' at {address}' if address else ''}: "
                                f"{type(exc).__name__}: {exc}") from None
    barrier: Any = None   # a Ray actor handle (its methods' .remote are not typed)
    try:
        have = ray.cluster_resources().get("CPU", 0.0)
        if have + 1e-9 < count * cpus:
            raise ExecutorError(f"the Ray cluster has {have:g} CPUs, and {count} shards of {cpus:g} CPU each must run "
                                "at once (they wait for each other at the start): add nodes, or give "
                                f"--cpus-per-shard {have / count:.2g}")
        name = f"cometbench-barrier-{uuid.uuid4().hex[:12]}"
        barrier = ray.remote(BarrierActor).options(name=name, num_cpus=0).remote(count, lead)
        task = ray.remote(shard_task).options(max_retries=0, num_cpus=cpus, scheduling_strategy="SPREAD")
        refs = {task.remote(shard_argv(argv, i, count, None, f"ray:{name}"), i): i for i in range(count)}
        outcomes: dict[int, ShardOutcome] = {}
        pending = list(refs)
        (Path(report_dir) / "shards").mkdir(parents=True, exist_ok=True)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ref = done[0]
            i = refs[ref]
            path = shard_dir(report_dir, i)
            log = Path(report_dir) / "shards" / f"shard-{i}.log"
            try:
                result = ray.get(ref)
            except RayError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.write_text(str(exc), encoding="utf-8")
                outcomes[i] = ShardOutcome(i, path, None, f"its Ray task failed ({type(exc).__name__}: {reason})", log)
                barrier.abort.remote(f"shard {i} failed before the start ({type(exc).__name__})")
                continue
            path.mkdir(parents=True, exist_ok=True)
            for file_name, data in result["files"].items():
                (path / file_name).write_bytes(data)
            log.write_bytes(result["log"])
            status = result["status"]
            error = None if status in (0, 1, 3) else f"exited with status {status}"
            if "report.json" not in result["files"]:
                barrier.abort.remote(f"shard {i} ended before the start (status {status})")
            outcomes[i] = ShardOutcome(i, path, status, error, log, result.get("host"))
        return [outcomes[i] for i in range(count)]
    finally:
        if barrier is not None:
            try:
                ray.kill(barrier)
            except Exception:  # noqa: BLE001 - the cluster may be gone; nothing left to free then
                pass
        if started_here:
            ray.shutdown()
