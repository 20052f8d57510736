"""sipp (SIPp 3.6, Debian package ``sip-tester``) against the fake FreeSWITCH's plain SIP listener.

The emulator runs in this process (``open_stack``), so the test can watch the bridge while sipp is
still in its call: sipp runs as a subprocess under trio, and the test polls
``stack.bridge.members("15*101-FSdefaultDomain")`` until it exits.

Scenarios (tests/compat/sipp/):

* ``uac.xml``: INVITE with an RTP/AVP offer -> [100] -> 407 -> ACK -> INVITE with digest
  credentials (``[authentication]``, from ``-au``/``-ap``) -> [100] -> 200 (a PCMU answer) -> ACK ->
  pause (``-d`` ms) -> BYE -> 200.  Used for (a) UDP, (b) TCP and (c) a 200-call load run;
* ``uac_wrong_password.xml``: the same up to the second INVITE, which must get 403 (d).

The SIP user is the comet user 503 of dev 15 (digest user ``000015503``, password = its users_auth
hash), dialling ``15*101*video`` (conference ``15*101-FSdefaultDomain``, profile ``video``).  sipp
exits 0 only when every call followed its scenario; its own statistics come from ``-trace_stat``
(a ``;``-separated CSV whose ``(C)`` columns are cumulative) and ``-trace_screen``.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.compat.conftest import require_tool

pytestmark = pytest.mark.compat

SCENARIOS = Path(__file__).resolve().parent / "sipp"
UAC = SCENARIOS / "uac.xml"
UAC_WRONG_PASSWORD = SCENARIOS / "uac_wrong_password.xml"
DEV, USER = 15, 503
SIP_USER = f"{DEV:06d}{USER}"            # 000015503
HASH = "sipp503usersauthhash"
STACK_USERS = [(DEV, USER, HASH)]   # users_auth rows of the conftest `stack` fixture
DIALLED = f"{DEV}*101*video"
CONFERENCE = f"{DEV}*101-FSdefaultDomain"


def sipp_available() -> bool:
    exe = shutil.which("sipp")
    if not exe:
        return False
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    return "SIPp v3." in out.stdout + out.stderr


@pytest.fixture
def sipp() -> str:
    require_tool("sipp", sipp_available, "apt-get install -y sip-tester")
    return shutil.which("sipp")  # type: ignore[return-value]




@dataclass
class SippRun:
    returncode: int
    output: str
    stats: dict[str, str]                 # last row of the -trace_stat CSV
    screen: str                           # -trace_screen (the final screens)
    messages: str                         # -trace_msg log ("" unless asked)
    errors: str                           # -trace_err log
    workdir: Path
    seen_members: list[list[tuple[int, str]]] = field(default_factory=list)  # bridge snapshots, the last after exit

    def count(self, column: str) -> int:
        return int(self.stats[column])

    def describe(self) -> str:
        return (f"sipp exit {self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n--- output ---\n"
                f"{self.output[-3000:]}")


def sipp_args(sipp: str, stack, scenario: Path, workdir: Path, *, password: str = HASH, transport: str = "u1",
              duration_ms: int = 1500, calls: int = 1, rate: float | None = None, limit: int | None = None,
              trace_msg: bool = False) -> list[str]:
    args = [sipp, f"127.0.0.1:{stack.ports['sip']}", "-sf", str(scenario), "-s", DIALLED,
            "-au", SIP_USER, "-ap", password, "-key", "caller", SIP_USER,
            "-i", "127.0.0.1", "-t", transport, "-d", str(duration_ms), "-m", str(calls),
            "-nostdin", "-timeout", "120s", "-timeout_error",
            "-trace_stat", "-stf", str(workdir / "stat.csv"), "-fd", "1",
            "-trace_screen", "-screen_file", str(workdir / "screen.log"),
            "-trace_err", "-error_file", str(workdir / "errors.log")]
    if rate is not None:
        args += ["-r", str(rate)]
    if limit is not None:
        args += ["-l", str(limit)]
    if trace_msg:
        args += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    return args


def read_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


async def run_sipp(args: list[str], workdir: Path, stack=None, *, timeout: float = 150) -> SippRun:
    """Run sipp to completion; meanwhile snapshot the conference's members every 10 ms."""
    snapshots: list[list[tuple[int, str]]] = []
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            def snapshot() -> None:
                if stack is not None:
                    snapshots.append([(m.id, m.channel.caller_id_number) for m in stack.bridge.members(CONFERENCE)])

            async def watch() -> None:
                while not done.is_set():
                    snapshot()
                    await trio.sleep(0.01)

            nursery.start_soon(watch)
            try:
                with (workdir / "sipp.out").open("wb") as out:
                    proc = await trio.run_process(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                                  stderr=subprocess.STDOUT, check=False)
            finally:
                done.set()
                snapshot()  # once more after sipp's last message (the 200 to its BYE)

    def text(name: str) -> str:
        p = workdir / name
        return p.read_text(errors="replace") if p.exists() else ""

    return SippRun(proc.returncode, text("sipp.out"), read_stats(workdir / "stat.csv"),
                   text("screen.log"), text("messages.log"), text("errors.log"), workdir, snapshots)


def sip_messages(log: str) -> list[str]:
    """The SIP messages of a -trace_msg log, in order (each starting at its start line)."""
    return [block.split("\n\n", 1)[1] if "\n\n" in block else block
            for block in re.split(r"\n-{20,}[^\n]*\n", log)
            if "message received" in block or "message sent" in block]


# --- (a), (b) one call ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
async def test_one_call_joins_and_leaves_the_conference(sipp, stack, tmp_path, transport):
    run = await run_sipp(sipp_args(sipp, stack, UAC, tmp_path, transport=transport, duration_ms=1500,
                                   trace_msg=True), tmp_path, stack)
    assert run.returncode == 0, run.describe()
    assert run.count("SuccessfulCall(C)") == 1 and run.count("FailedCall(C)") == 0, run.stats

    # during the pause the bridge had exactly this caller in 15*101-FSdefaultDomain
    in_call = [snap for snap in run.seen_members if snap]
    assert in_call, "the member never showed up in the conference while sipp was in its pause"
    assert all(len(snap) == 1 and snap[0][1] == SIP_USER for snap in in_call), in_call[:3]
    assert len(in_call) >= 50, f"member seen in only {len(in_call)} 10 ms polls of a 1.5 s pause"
    # ... and after the BYE the conference is gone
    assert run.seen_members[-1] == []
    assert stack.bridge.conference(CONFERENCE) is None
    assert "No active conferences." in stack.bridge.api("conference list")

    # the exchange sipp saw: 407 then 100 + 200 with a plain PCMU answer, 200 to the BYE
    transport_word = "UDP" if transport == "u1" else "TCP"
    received = [m for m in sip_messages(run.messages)]
    starts = [m.split("\n", 1)[0].strip() for m in received]
    assert starts[:2] == [f"INVITE sip:{DIALLED}@127.0.0.1:{stack.ports['sip']} SIP/2.0",
                          "SIP/2.0 407 Proxy Authentication Required"], starts
    assert "SIP/2.0 200 OK" in starts and starts[-1] == "SIP/2.0 200 OK" and starts[-2].startswith("BYE "), starts
    answer = next(m for m in received if m.startswith("SIP/2.0 200 OK") and "CSeq: 2 INVITE" in m)
    assert "m=audio 16384 RTP/AVP 0" in answer and "a=rtpmap:0 PCMU/8000" in answer, answer
    assert f"transport={transport_word.lower()}" in answer
    assert stack.sip.stats["answered"] == 1 and stack.sip.stats["byes"] == 1


async def test_answer_contact_points_at_the_sip_listener(sipp, stack, tmp_path):
    run = await run_sipp(sipp_args(sipp, stack, UAC, tmp_path, duration_ms=10, trace_msg=True), tmp_path)
    assert run.returncode == 0, run.describe()
    answer = next(m for m in sip_messages(run.messages) if m.startswith("SIP/2.0 200 OK") and "CSeq: 2 INVITE" in m)
    contact = re.search(r"^Contact: <sip:[^@>]+@([^:;>]+):(\d+)", answer, re.M)
    assert contact is not None, answer
    # a UA sends the ACK and the BYE to the remote target (RFC 3261 12.1.2, 13.2.2.4)
    assert int(contact.group(2)) == stack.ports["sip"], (contact.group(0), stack.ports)


# --- (c) load ---------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_load_200_calls_at_20_per_second(sipp, stack, tmp_path):
    run = await run_sipp(sipp_args(sipp, stack, UAC, tmp_path, duration_ms=200, calls=200, rate=20, limit=20),
                         tmp_path, stack, timeout=120)
    s = run.stats
    report = (f"sipp load: {s.get('TotalCallCreated')} calls created, {s.get('SuccessfulCall(C)')} successful, "
              f"{s.get('FailedCall(C)')} failed, {s.get('Retransmissions(C)')} retransmissions, "
              f"elapsed {s.get('ElapsedTime(C)')}, call rate {s.get('CallRate(C)')}/s, "
              f"setup {s.get('ResponseTimesetup(C)')} (sd {s.get('ResponseTimesetupStDev(C)')}), "
              f"invite->200 {s.get('ResponseTimeinvite(C)')}, call length {s.get('CallLength(C)')}")
    print("\n" + report)
    assert run.returncode == 0, run.describe()
    assert run.count("SuccessfulCall(C)") == 200, report
    assert run.count("FailedCall(C)") == 0, report
    assert run.count("TotalCallCreated") == 200, report
    # the final screen says the same
    assert re.search(r"Successful call\s+\|\s+\d+\s+\|\s+200\b", run.screen), run.screen[-2000:]
    assert re.search(r"Failed call\s+\|\s+\d+\s+\|\s+0\b", run.screen), run.screen[-2000:]
    # the emulator's side: 200 answered, 200 BYEs, never more than -l 20 members at once, room gone
    assert stack.sip.stats["answered"] == 200 and stack.sip.stats["byes"] == 200, stack.sip.snapshot()
    peak = max(len(snap) for snap in run.seen_members)
    assert 1 <= peak <= 20, peak
    assert stack.bridge.conference(CONFERENCE) is None
    assert not stack.sip.dialogs and not stack.sip.pending


# --- (d) wrong password ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
async def test_wrong_password_gets_403(sipp, stack, tmp_path, transport):
    run = await run_sipp(sipp_args(sipp, stack, UAC_WRONG_PASSWORD, tmp_path, password="not-the-hash",
                                   transport=transport, trace_msg=True), tmp_path, stack)
    assert run.returncode == 0, run.describe()   # the scenario requires the 403
    assert run.count("SuccessfulCall(C)") == 1 and run.count("FailedCall(C)") == 0, run.stats
    starts = [m.split("\n", 1)[0].strip() for m in sip_messages(run.messages)]
    assert starts.count("SIP/2.0 403 Forbidden") == 1, starts
    assert all(not snap for snap in run.seen_members)
    assert stack.bridge.conference(CONFERENCE) is None and stack.sip.stats["answered"] == 0
    failed = stack.journal.entries(service="sip", kind="auth_failed")
    assert failed and f"user='{SIP_USER}'" in failed[-1]["data"], failed
