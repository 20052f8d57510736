"""The ``cometbench`` command: run the scenarios, write and compare their reports, run the emulator
(with its control plane), run one call through it, list its quirks, read its journal.

Every mistake a user can make on the command line or in the config file is a *usage error*: one
line on stderr starting with ``cometbench:`` that names the flag, file or key and says what would
work, and exit status 2 -- never a traceback.  A service that cannot start (port in use, no
permission) names the service and the port and exits with status 1.

``serve`` prints exactly one JSON object on stdout once every service listens (the ready line;
scripts read the ports from it) and says on stderr what is running: the profile, where the state,
the journal and the generated CA certificate are, and whether SIP is served as ws or wss.

``run`` tells the scenario pack's stories (or the ones named) against fresh in-process stacks and
writes a run directory (journal, histograms, report.json); it shows its progress on stdout, ends
with a summary and the report's path, and exits 0 only when every scenario passed (1 when one
failed, 3 when only a limit of ``--thresholds`` was breached, 130 when Ctrl-C stopped it -- the
report then says what did not finish); at its end it writes report.html and junit.xml too
(bench/report/writer.py).  ``report`` writes a run directory's reports again; ``diff`` compares two
run directories stage by stage (exit 1 on a regression).  ``serve`` also starts the control plane
(emulator/control/) unless ``--no-control``, and prints its token on stderr.

``call`` runs one two-party call (``bench/call.py``) and prints a summary on stderr and one JSON line
on stdout; its exit status is 0 only when the call went through (1 when it did not).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import gc
import json
import logging
import os
import signal
import sqlite3
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import trio

from emulator.config import DEFAULT_PORTS, IMPLEMENTED_SERVICES, MEDIA_MODES, Config, ConfigError
from emulator.profiles import DEFAULT_PROFILE, PROFILE_NAMES, quirks_table

EXIT_BREACH = 3   # a threshold breached (bench.report.thresholds.EXIT_BREACH)

DEFAULTS = Config()
CONFIG_FILE = "cometbench.toml"

EXAMPLES = """\
examples:
  cometbench run                             the default scenario pack in virtual time, to a report
  cometbench run refresh_mid_call --seed 7   one scenario (see `cometbench run --list`)
  cometbench serve                           the emulator on the real servers' ports (WebSocket 8087,
                                             CometQL 3307, SIP/WSS 7443, SIP 5060, ESL 8021, directory 8082)
  cometbench run --thresholds examples/thresholds.toml   the pack, judged against limits (exit 3 on a breach)
  cometbench report reports/<run>            write a run's report.html, junit.xml, report.json again
  cometbench diff reports/<a> reports/<b>    compare two runs stage by stage, flag regressions
  cometbench serve --free-ports              every service on a free port; read them from the ready line
  cometbench serve --profile lenient         without the real server's harmful quirks
  cometbench serve --quirk queue_ten_per_login=off
  cometbench serve --state state/cb.sqlite   keep users, messages and the journal across restarts
  cometbench serve -v                        log connections and requests on stderr as they happen
  cometbench quirks                          every quirk, its state in each profile, where it is described
  cometbench journal --kind query --follow   watch CometQL queries arrive (needs a journal file)
  cometbench call --network 4g               one doctor-patient call on 4g, in virtual time: stages, JSON line
"""

CALL_EXAMPLES = """\
examples:
  cometbench call                                 loopback, virtual time, seed 1, a 10 s call
  cometbench call --network 4g --seed 7           what does one call cost on 4g?
  cometbench call --network doctor=lan,patient=3g --duration 3600
  cometbench call --network 4g --loss 5%          4g with 5 % loss
  cometbench call --real-time                     the emulator on loopback sockets, the real clock
  cometbench call --target ws=10.0.0.5:8087,cometql=10.0.0.5:3307,dev_id=15,password=secret --insecure
                                                  a real CppComet + FreeSWITCH, with the same clients
exit status: 0 the call went through, 1 it did not (the JSON line says why), 2 a usage error
"""


class UsageError(Exception):
    """A mistake of the user's: printed as ``cometbench: <message>``, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with this command's error format: ``cometbench: ...`` and a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"cometbench: {message}\n(see `{self.prog} --help`)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=110)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("cometbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: use 0-65535 (0 = any free port)")
    return value


def node_arg(text: str) -> dict:
    """``server=HOST,esl_port=N[,...]``: one [[freeswitch]] entry."""
    known = ("server", "esl_port", "esl_password", "ws_port", "ws_host")
    entry: dict = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key not in known:
            raise argparse.ArgumentTypeError(f"{part!r} is not KEY=VALUE with a key of {', '.join(known)}")
        if key in ("esl_port", "ws_port"):
            try:
                entry[key] = port_arg(value)
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{key}: {exc}") from None
        else:
            entry[key] = value
    if "server" not in entry or "esl_port" not in entry:
        raise argparse.ArgumentTypeError(f"{text!r} needs server=HOST and esl_port=N")
    return entry


def quirk_arg(text: str) -> tuple[str, bool]:
    name, sep, state = text.partition("=")
    if not sep or not name or state not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expects NAME=on|off, got {text!r} (`cometbench quirks` lists the names)")
    return name, state == "on"


# --- argument parsers ------------------------------------------------------------------------------


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help=f"TOML config file (default: ./{CONFIG_FILE} if it exists; README lists every key)")
    p.add_argument("--state", metavar="PATH",
                   help=f"state file, or :memory: to keep nothing (default: {DEFAULTS.state})")
    p.add_argument("--journal-path", metavar="PATH",
                   help="journal file (default: journal.sqlite beside the state file; in memory with :memory:)")


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the emulator until Ctrl-C / SIGTERM", formatter_class=HelpFormatter, epilog=EXAMPLES,
        description="Run the emulated CppComet server and FreeSWITCH node.  Flags win over the config file,\n"
                    "which wins over the defaults shown.  Once every service listens, one JSON line goes to\n"
                    "stdout (the ready line); what is running is said on stderr.")
    _config_arguments(p)
    p.add_argument("--host", help=f"address every listener binds (default: {DEFAULTS.host})")
    p.add_argument("--password",
                   help=f"server password: CometQL login, JWT secret prefix (default: {DEFAULTS.password})")
    p.add_argument("--profile", choices=PROFILE_NAMES, help=f"fidelity profile (default: {DEFAULT_PROFILE})")
    p.add_argument("--quirk", action="append", default=[], metavar="NAME=on|off", type=quirk_arg,
                   help="switch one quirk on top of the profile, which is then named <profile>+custom (repeatable)")
    p.add_argument("--no-journal", action="store_true", help="do not record the journal (default: record it)")
    p.add_argument("--free-ports", action="store_true", help="bind every service to a free port (port 0)")
    p.add_argument("--sip-public-host", metavar="HOST",
                   help="serverName the sys_sipCall push advertises (default: the --host value)")
    p.add_argument("--sip-public-port", type=port_arg, metavar="N",
                   help="serverPort it advertises (default: the bound sip_ws port)")
    p.add_argument("--no-sip-tls", action="store_true", help="serve SIP over plain ws:// (default: wss://)")
    p.add_argument("--no-freeswitch", action="store_true",
                   help="do not run the fake FreeSWITCH node (INSERT INTO conference then answers ERROR 500, "
                        "unless --freeswitch-node names an external one)")
    p.add_argument("--freeswitch-node", action="append", default=[], metavar="SPEC", type=node_arg,
                   help="an external FreeSWITCH node for the comet side (a [[freeswitch]] entry): "
                        "server=HOST,esl_port=N[,esl_password=P][,ws_port=N][,ws_host=HOST] (repeatable)")
    p.add_argument("--freeswitch-only", action="store_true",
                   help="run the fake FreeSWITCH alone, as the FreeSWITCH node of another comet server "
                        "(needs --directory-url)")
    p.add_argument("--directory-url", metavar="URL",
                   help="where the fake FreeSWITCH looks SIP passwords up: the comet server's directory endpoint, "
                        "e.g. http://127.0.0.1:8082 (default: the in-process comet side)")
    p.add_argument("--esl-password", help=f"ESL password (default: {DEFAULTS.esl_password})")
    p.add_argument("--media-link", metavar="PRESET",
                   help=f"link preset of the media model: loopback, lan, dsl, 4g, 3g, bad-wifi "
                        f"(default: {DEFAULTS.media_link})")
    p.add_argument("--media", choices=MEDIA_MODES, default=None,
                   help="model: no media endpoint, the media start from the media model (default); real: a real "
                        "WebRTC endpoint (aiortc) in a media worker process (needs the 'media' extra, real time)")
    for service, default in DEFAULT_PORTS.items():
        later = "" if service in IMPLEMENTED_SERVICES else "; reserved"
        p.add_argument(f"--{service.replace('_', '-')}-port", type=port_arg, metavar="N",
                       help=f"port of the {service} service (default: {default}{later})")
    p.add_argument("--no-control", action="store_true",
                   help="do not run the control plane (REST API, dashboard, /metrics on --control-port)")
    p.add_argument("--control-host", metavar="HOST",
                   help=f"address the control plane binds (default: {DEFAULTS.control_host}, loopback only)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log connections, logins, queries and commands on stderr as they happen; "
                        "-vv adds every frame and message")


def _journal_parser(sub) -> None:
    p = sub.add_parser(
        "journal", help="print the entries of a journal file", formatter_class=HelpFormatter,
        description="Print what a running or finished `cometbench serve` recorded: one line per entry\n"
                    "(time, service, kind, direction, ids, data).  Without PATH the journal that serve writes\n"
                    "with the same config (--config, --state, --journal-path) is read.",
        epilog="examples:\n  cometbench journal --state state/cb.sqlite --kind connect\n"
               "  cometbench journal state/journal.sqlite --service cometql --follow\n")
    p.add_argument("path", nargs="?", metavar="PATH", help="journal file (default: from the config, as serve finds it)")
    _config_arguments(p)
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only entries of this kind, e.g. connect, query, frame (repeatable; README lists them)")
    p.add_argument("--service", action="append", default=[], metavar="SERVICE",
                   help="only entries of this service: comet, cometql, directory, sip, esl, freeswitch, "
                        "conference, stack (repeatable)")
    p.add_argument("--run", metavar="RUN_ID", help="entries of this run (default: the latest run; 'all' for every run)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new entries until Ctrl-C")
    p.add_argument("--json", action="store_true", help="one JSON object per entry instead of text")


RUN_EXAMPLES = """\
examples:
  cometbench run                                 the default pack, virtual time, a report under reports/
  cometbench run --list                          the scenarios and what each tells
  cometbench run refresh_mid_call esl_kick       two scenarios of the pack
  cometbench run my_story.py                     a scenario file of your own
  cometbench run two_party_call --repeat 1000    the join-latency benchmark (percentiles in the report)
  cometbench run --real-time join_storm          100 rooms at once on loopback sockets, real clock
  cometbench run --profile lenient               without the real servers' harmful quirks
  cometbench run --network 4g                    every actor on the 4g profile (fixtures/network_profiles.toml)
  cometbench run --network 4g,patient=3g         the patient on 3g, everyone else on 4g
  cometbench run two_party_call --target ws=10.0.0.5:8087,cometql=10.0.0.5:3307,insecure
                                                 against a deployment (real time; stories that need the
                                                 in-process stack are skipped, the report says why)
  cometbench run two_party_call --real-time --browser patient
                                                 a real Chromium plays the patient (the demo app)
  cometbench run mute_propagation --real-time --browser doctor --app my_app.toml
                                                 ... your own page plays the doctor (README: bring your own app)
"""


def _run_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="tell the scenarios (the default pack, or those named) and write a report",
        formatter_class=HelpFormatter, epilog=RUN_EXAMPLES,
        description="Run scenarios against fresh in-process emulators.  Each scenario is a story in scenarios/\n"
                    "(or a .py file you name); every run writes a directory with the journal (journal.sqlite),\n"
                    "the latency histograms (histograms.hlog) and report.json.  Exit status 0 only when every\n"
                    "scenario passed.")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="pack scenario names or scenario .py files (default: the default pack)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of everything random (default 0); equal seeds give equal runs in virtual time")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument("--virtual", dest="clock", action="store_const", const="virtual",
                       help="in-memory network under a virtual clock: calls run much faster than real time, "
                            "and equal seeds give equal runs (default)")
    clock.add_argument("--real-time", dest="clock", action="store_const", const="real",
                       help="OS sockets on 127.0.0.1 and the real clock (stories take as long as they tell; "
                            "the only clock of a --target)")
    p.set_defaults(clock=None)
    p.add_argument("--network", default="loopback", metavar="PROFILE",
                   help="network profile of every actor's links, or per actor: doctor=lan,patient=3g, or both: "
                        "4g,patient=3g (default loopback: no conditions; profiles: "
                        "fixtures/network_profiles.toml; the parser of `cometbench call`)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=DEFAULT_PROFILE,
                   help=f"fidelity profile of the emulator (default: {DEFAULT_PROFILE})")
    p.add_argument("--media", choices=MEDIA_MODES, default="model",
                   help="model: the media model times the media (default); real: the fake FreeSWITCH answers with a "
                        "real WebRTC endpoint, so real browsers connect and decode video (needs --real-time and "
                        "the 'media' extra)")
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="run each scenario N times (default 1)")
    p.add_argument("--report-dir", metavar="DIR",
                   help="where the run directory goes (default: a new reports/<UTC time>-seed<N>/)")
    p.add_argument("--target", default="in-process", metavar="TARGET",
                   help="what the actors talk to: in-process (default: a fresh emulator per scenario), or a "
                        "deployment: ws=HOST:PORT,cometql=HOST:PORT[,dev_id=N][,password=P][,ca=FILE][,insecure] "
                        "(the spec of `cometbench call --target`; real time, --network loopback only)")
    p.add_argument("--ca", metavar="FILE", help="with --target: CA file to trust for SIP over WSS")
    p.add_argument("--insecure", action="store_true",
                   help="with --target: accept any certificate for SIP over WSS (like --ignore-certificate-errors)")
    p.add_argument("--all", action="store_true",
                   help="every scenario of the pack, the long ones kept out of the default pack included")
    browser = p.add_argument_group("real browsers (need --real-time; Debian's /usr/bin/chromium and the "
                                   "'browser' extra)")
    browser.add_argument("--browser", action="append", default=[], metavar="ACTOR",
                         help="a real headless Chromium plays this actor (repeatable: --browser doctor "
                              "--browser patient); the others stay virtual")
    browser.add_argument("--app", default="demo", metavar="PROFILE",
                         help="the page the browsers open: demo (default), demo-legacy (streams attached with "
                              "URL.createObjectURL, as cometVideoApi.js does), demo-jssip3, or an app profile "
                              "file of yours (.toml/.json)")
    browser.add_argument("--no-shim", action="store_true",
                         help="do not install the URL.createObjectURL(MediaStream) shim Chromium 156 needs for "
                              "cometVideoApi.js (shows what the unshimmed client does)")
    browser.add_argument("--camera", metavar="FILE.y4m",
                         help="the fake camera's video (default: a generated test pattern)")
    browser.add_argument("--microphone", metavar="FILE.wav",
                         help="the fake microphone's sound (default: a generated beep)")
    p.add_argument("--list", action="store_true", help="list the pack's scenarios and exit")
    _report_options(p)
    from bench.distributed.cli import add_run_arguments

    add_run_arguments(p)   # --shard i/N, --shards N --executor ..., the shared start (bench/distributed)


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--thresholds", metavar="FILE",
                   help="TOML file of limits, e.g. limits = [\"p99(join_total) < 8 s\", \"failure_rate < 1 %%\"]; "
                        f"a breach exits with status {EXIT_BREACH} (README: Thresholds)")
    p.add_argument("--baseline", metavar="RUN_DIR",
                   help="a run directory to compare with: the HTML report and report.json include the comparison")
    p.add_argument("--tolerance", type=_percent_arg, default=10.0, metavar="PCT",
                   help="with --baseline: how much slower a percentile may be before it is a regression "
                        "(default 10%%)")


def _percent_arg(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%").strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a percentage such as 10 or 10%, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a tolerance cannot be negative, got {text!r}")
    return value


def _ms_arg(text: str) -> float:
    raw = text.strip()
    scale = 1.0
    for unit, factor in (("ms", 1.0), ("s", 1000.0)):
        if raw.endswith(unit):
            raw, scale = raw[: -len(unit)].strip(), factor
            break
    try:
        value = float(raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects milliseconds such as 5 or 5ms, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {text!r}")
    return value


REPORT_EXAMPLES = """\
examples:
  cometbench report reports/20261207T101500Z-seed0            write report.html, junit.xml again
  cometbench report RUN --thresholds thresholds.toml          judge a finished run against limits
  cometbench report RUN --baseline reports/last-release       include a comparison in report.html
"""

DIFF_EXAMPLES = """\
examples:
  cometbench diff reports/main reports/my-branch              stage by stage, regressions flagged
  cometbench diff A B --tolerance 5 --percentiles 50,99       stricter, two percentiles
  cometbench diff A B --json                                  the comparison as JSON on stdout
"""


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write a run directory's reports again (report.html, report.json, junit.xml)",
        formatter_class=HelpFormatter, epilog=REPORT_EXAMPLES,
        description="Regenerate the reports of a run directory that `cometbench run` wrote, from its\n"
                    "report.json, histograms.hlog and journal.sqlite; optionally judge it against thresholds\n"
                    f"(exit status {EXIT_BREACH} on a breach) and compare it with a baseline run.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (e.g. reports/<time>-seed0)")
    _report_options(p)


def _diff_parser(sub) -> None:
    p = sub.add_parser(
        "diff", help="compare two runs stage by stage and flag regressions", formatter_class=HelpFormatter,
        epilog=DIFF_EXAMPLES,
        description="Compare RUN_B (the candidate) with RUN_A (the baseline) stage by stage from their\n"
                    "histograms.  A percentile slower by more than the tolerance is a regression only when its\n"
                    "95% confidence intervals in the two runs do not overlap; otherwise the difference is noise.\n"
                    "Exit status 1 when there is a regression, 0 when not, 2 for a usage error.")
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run directory")
    p.add_argument("run_b", metavar="RUN_B", help="the run to judge")
    p.add_argument("--tolerance", type=_percent_arg, default=10.0, metavar="PCT",
                   help="how much slower a percentile may be before it is a regression (default 10%%)")
    p.add_argument("--min-delta", type=_ms_arg, default=1.0, metavar="MS",
                   help="differences of at most this many milliseconds are never flagged (default 1 ms)")
    p.add_argument("--percentiles", default="50,90,99", metavar="LIST",
                   help="percentiles to compare, comma-separated (default 50,90,99)")
    p.add_argument("--scenario", metavar="NAME", help="compare one scenario's histograms (default: the whole run)")
    p.add_argument("--all", action="store_true", help="list the stages within the tolerance too")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")


def fraction_arg(text: str) -> float:
    """A probability: 0.2 or 20%."""
    value_text = text.strip()
    percent = value_text.endswith("%")
    try:
        value = float(value_text[:-1] if percent else value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: use 0..1 or a percentage such as 20%") from None
    if percent:
        value /= 100.0
    if not 0.0 <= value <= 1.0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: a loss is 0..1 or 0-100 % (not over 100 %, "
                                         "not negative)")
    return value


def non_negative(what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what}") from None
        if value < 0 or value != value or value in (float("inf"),):
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a finite number >= 0")
        return value

    return parse


def _call_parser(sub) -> None:
    p = sub.add_parser(
        "call", help="one doctor-patient video call from invitation to hang-up: stages and a JSON line",
        formatter_class=HelpFormatter, epilog=CALL_EXAMPLES,
        description="One two-party video call (a doctor and a patient, names from Faker with the seed) from the\n"
                    "invitation to the hang-up, with the virtual clients (CometServerApi.js, cometVideoApi.js,\n"
                    "JsSIP, the app backend).  A summary goes to stderr, one JSON line to stdout: passed, seed,\n"
                    "network, simulated_s, wall_s, journal_sha256, stages (ms; the worse side), failure.\n"
                    "Stage names: docs/stages.md.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--virtual", dest="mode", action="store_const", const="virtual",
                       help="the emulator and the clients on the in-memory network, virtual time (default)")
    where.add_argument("--real-time", dest="mode", action="store_const", const="real-time",
                       help="the emulator on loopback sockets, the real clock")
    where.add_argument("--target", metavar="SPEC",
                       help="a real deployment instead of the emulator: ws=HOST:PORT,cometql=HOST:PORT"
                            "[,dev_id=N][,password=P][,ca=FILE][,insecure]")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="seed of every random choice (default: 1)")
    p.add_argument("--network", default="loopback", metavar="PROFILE",
                   help="network profile of both actors, or per actor: doctor=lan,patient=3g (default: loopback; "
                        "fixtures/network_profiles.toml)")
    p.add_argument("--rtt-ms", type=non_negative("milliseconds"), metavar="MS",
                   help="override the profile's round-trip time")
    p.add_argument("--jitter-ms", type=non_negative("milliseconds"), metavar="MS", help="override its jitter")
    p.add_argument("--loss", type=fraction_arg, metavar="P", help="override its loss: 0..1 or a percentage (5%%)")
    p.add_argument("--bandwidth-kbps", type=non_negative("kbit/s"), metavar="KBPS",
                   help="override its bandwidth (0 = unlimited)")
    p.add_argument("--duration", type=non_negative("seconds"), default=10.0, metavar="SECONDS",
                   help="how long the call is held once both see each other (default: 10)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=DEFAULT_PROFILE,
                   help=f"fidelity profile of the emulator (default: {DEFAULT_PROFILE})")
    p.add_argument("--stage", action="append", default=[], metavar="NAME",
                   help="only these stages in the output (repeatable; default: every stage)")
    p.add_argument("--ca", metavar="FILE", help="with --target: CA file to trust for SIP over WSS")
    p.add_argument("--insecure", action="store_true",
                   help="with --target: accept any certificate for SIP over WSS (like --ignore-certificate-errors)")
    p.add_argument("--no-journal", action="store_true", help="do not record the journal (the hash is then of nothing)")


def build_parser() -> Parser:
    parser = Parser(prog="cometbench", formatter_class=HelpFormatter, epilog=EXAMPLES,
                    description="An emulator of the CppComet comet server and FreeSWITCH for testing web video-call\n"
                                "applications, and a bench for call scenarios.  `cometbench COMMAND --help` shows\n"
                                "a command's options and their defaults.")
    parser.add_argument("--version", action="version", version=f"cometbench {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    _report_parser(sub)
    _diff_parser(sub)
    from bench.distributed.cli import add_merge_parser

    add_merge_parser(sub, HelpFormatter, _report_options)   # cometbench merge (bench/distributed)
    _serve_parser(sub)
    sub.add_parser("quirks", help="list the fidelity quirks, their state in each profile and their docs",
                   formatter_class=HelpFormatter)
    _journal_parser(sub)
    _call_parser(sub)
    return parser


# --- configuration ---------------------------------------------------------------------------------


@dataclass
class Source:
    """Where the configuration came from, for messages."""

    path: str | None = None
    found: bool = False  # picked up from the working directory, not named with --config

    def __str__(self) -> str:
        if self.path is None:
            return "the defaults"
        where = str(Path(self.path).resolve())
        return f"{where} (picked up from the working directory; --config names another file)" if self.found else where


def load_config(args: argparse.Namespace) -> tuple[Config, Source]:
    source = Source(args.config)
    if args.config is None and Path(CONFIG_FILE).is_file():
        source = Source(CONFIG_FILE, found=True)
    cfg = Config()
    if source.path is not None:
        try:
            cfg = Config.from_toml(source.path)
        except FileNotFoundError:
            raise UsageError(f"config file not found: {source.path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read config file {source}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"config file {source} is not valid TOML: {exc}") from None
        except ConfigError as exc:
            raise UsageError(f"config file {source}: {exc}") from None
    for name in ("state", "journal_path"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    return cfg, source


def config_from_args(args: argparse.Namespace) -> tuple[Config, Source]:
    cfg, source = load_config(args)
    for name in ("host", "password", "profile", "sip_public_host", "sip_public_port", "esl_password", "media_link",
                 "control_host", "media"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    if args.no_journal:
        cfg.journal = False
    if args.no_sip_tls:
        cfg.sip_tls = False
    if args.no_freeswitch:
        cfg.freeswitch_emulated = False
    if args.no_control:
        cfg.control = False
    if args.freeswitch_only:
        cfg.comet_emulated = False
    if args.directory_url is not None:
        cfg.directory_url = args.directory_url
    if args.freeswitch_node:
        cfg.freeswitch = list(args.freeswitch_node)
    try:
        cfg.check_parts()
    except ConfigError as exc:
        flags = " (--freeswitch-only, --no-freeswitch, --directory-url)"
        raise UsageError(f"{exc}{flags}") from None
    if args.free_ports:
        cfg.free_ports()
    for service in DEFAULT_PORTS:
        port = getattr(args, f"{service}_port")
        if port is not None:
            cfg.ports[service] = port
    check_names(cfg, source, flag_quirks=[name for name, _ in args.quirk], media_link_flag=args.media_link is not None)
    for name, state in args.quirk:
        cfg.quirks[name] = state
    return cfg, source


def check_names(cfg: Config, source: Source, flag_quirks: list[str], media_link_flag: bool = False) -> None:
    """Profile, quirk and media-link names, and the conference profiles file, before anything binds."""
    import emulator.stack  # noqa: F401  (services register their quirks on import)
    from emulator.freeswitch.media import link_presets
    from emulator.profiles import QUIRKS

    in_file = f" in {source}" if source.path else ""
    if cfg.profile not in PROFILE_NAMES:
        raise UsageError(f"unknown profile {cfg.profile!r}{in_file}; known: {', '.join(PROFILE_NAMES)}")
    for name in [*flag_quirks, *cfg.quirks]:
        if name not in QUIRKS:
            where = " (--quirk)" if name in flag_quirks else f" in [quirks] of {source}"
            close = difflib.get_close_matches(name, QUIRKS, n=1)
            hint = f"; did you mean {close[0]}?" if close else "."
            raise UsageError(f"unknown quirk {name!r}{where}{hint} Known quirks: {', '.join(sorted(QUIRKS))} "
                             "(`cometbench quirks` describes them)")
    presets = link_presets()
    if cfg.media_link not in presets:
        what = "--media-link" if media_link_flag else f"media_link{in_file}"
        raise UsageError(f"unknown {what} {cfg.media_link!r}; known: {', '.join(sorted(presets))}")
    if cfg.freeswitch_emulated and cfg.conference_profiles:
        from emulator.freeswitch.conference_profiles import load_conference_profiles

        try:
            load_conference_profiles(cfg.conference_profiles)
        except Exception as exc:  # noqa: BLE001 - a missing or malformed XML file; the message says which
            raise UsageError(f"conference_profiles {cfg.conference_profiles!r}{in_file} cannot be used: {exc}"
                             ) from None


# --- serve -----------------------------------------------------------------------------------------


def tune_gc() -> None:
    """Keep the cyclic garbage collector out of the latency path of a long-running server.

    With thousands of connections the emulator tracks ~700,000 objects; CPython's default
    thresholds then run full collections of 300+ ms in the middle of a fan-out (measured by
    tests/perf/bench_comet_ws.py: publish p99 390 ms -> 44 ms with this).  Objects that exist at
    start-up are frozen out of collection, and collections run less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def open_connections(stack) -> int:
    """Connections open now: the link table's (every protocol), or the comet hub's without one."""
    links = getattr(stack, "links", None)
    return len(links.connections()) if links is not None else len(stack.hub.connections)


def ready_line(stack) -> dict:
    """The stack's ready line plus what a script needs to connect: state, journal, SIP scheme, CA."""
    cfg = stack.config
    line = stack.ready_line()
    line["state"] = cfg.state
    line["journal"] = cfg.resolved_journal_path() if cfg.journal else None
    if stack.certificates is not None:
        line["sip_ws_scheme"] = "wss" if cfg.sip_tls else "ws"
        line["ca_cert"] = str(stack.certificates.ca_cert)
    return line


def describe(stack, source: Source) -> list[str]:
    """What is running, in sentences, for stderr."""
    cfg, profile, ports, host = stack.config, stack.profile.name, stack.ports, stack.config.host
    lines = [f"cometbench {version()}, " + (f"config file {source}" if source.path else
                                             "no config file: built-in defaults and flags")]
    if profile.endswith("+custom"):
        base = profile[:-len("+custom")]
        switched = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in sorted(cfg.quirks.items()))
        lines.append(f"profile {profile}: {base} with quirks switched by --quirk or [quirks] ({switched}); "
                     "'+custom' marks a profile that is not a stock one")
    else:
        lines.append(f"profile {profile}" + (" (faithful to CppComet 4.09 and FreeSWITCH 1.6)"
                                             if profile == DEFAULT_PROFILE else " (harmful quirks off)"))
    if cfg.state == ":memory:":
        lines.append("state in memory (:memory:): nothing is kept after exit; --state PATH keeps it")
    else:
        lines.append(f"state {Path(cfg.state).resolve()}")
    journal = cfg.resolved_journal_path()
    if not cfg.journal:
        lines.append("journal off (--no-journal / journal = false)")
    elif journal == ":memory:":
        lines.append("journal in memory: gone after exit; --state PATH or --journal-path PATH writes a file")
    else:
        lines.append(f"journal {Path(journal).resolve()} (read it with `cometbench journal {journal}`)")
    if "ws" in ports:
        lines.append(f"comet WebSocket ws://{host}:{ports['ws']}, CometQL (MySQL protocol) {host}:{ports['cometql']}, "
                     f"directory http://{host}:{ports['directory']}")
        for node in cfg.freeswitch:
            lines.append(f"FreeSWITCH node {node.get('server')}: ESL port {node.get('esl_port')}, browsers dial "
                         f"wss://{node.get('ws_host') or node.get('server')}:{node.get('ws_port', 7443)}")
    else:
        lines.append(f"FreeSWITCH only (no comet side): SIP passwords from {cfg.directory_url}")
    if stack.certificates is not None:
        scheme = "wss" if cfg.sip_tls else "ws"
        lines.append(f"SIP over {scheme}://{host}:{ports['sip_ws']} ({'TLS' if cfg.sip_tls else 'plain, no TLS'}), "
                     f"SIP UDP+TCP {host}:{ports['sip']}, ESL {host}:{ports['esl']}")
        ca = stack.certificates.ca_cert
        lines.append(f"CA certificate {ca} (trust it in the browser, or NODE_EXTRA_CA_CERTS={ca} for node)"
                     + (" -- a temporary folder, removed at exit" if not cfg.certs_dir and cfg.state == ":memory:"
                        else ""))
    elif not cfg.freeswitch:
        lines.append("fake FreeSWITCH off (--no-freeswitch): INSERT INTO conference answers ERROR 500")
    lines.append("ready; Ctrl-C or SIGTERM stops it")
    return lines


async def start_control(stack):
    """The control plane on the stack's nursery (None when ``control = false``), in its own
    :class:`emulator.stack.Service` (a comet or FreeSWITCH restart does not touch it)."""
    from emulator.control.server import ControlServer
    from emulator.stack import Service

    cfg = stack.config
    if not cfg.control:
        return None
    control = ControlServer(stack, cfg.control_token or None)
    await Service("control", control.serve, cfg.control_host, cfg.ports["control"], nursery=stack.nursery).start()
    stack.ports["control"] = control.port
    return control


async def serve(cfg: Config, source: Source | None = None) -> None:
    from emulator.housekeeping import reclaim_after_drops
    from emulator.stack import open_stack

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_stack(cfg) as stack:
            control = await start_control(stack)
            tune_gc()
            stack.nursery.start_soon(reclaim_after_drops, lambda: open_connections(stack))
            for line in describe(stack, source or Source()):
                print(f"cometbench: {line}", file=sys.stderr)
            if control is not None:
                base = f"http://{_url_host(cfg.control_host)}:{control.port}"
                print(f"cometbench: control plane {base}/api (Authorization: Bearer {control.token}), "
                      f"dashboard {base}/dashboard#token={control.token}, metrics {base}/metrics, "
                      f"API description {base}/openapi.json", file=sys.stderr)
                print(f"cometbench: control token {control.token}"
                      + (" (control_token of the config)" if cfg.control_token else
                         " (random; set control_token in the config to fix it)"), file=sys.stderr)
            else:
                print("cometbench: control plane off (--no-control / control = false)", file=sys.stderr)
            sys.stderr.flush()
            print(json.dumps(ready_line(stack)), flush=True)
            async for _ in signals:
                print("cometbench: shutting down", file=sys.stderr, flush=True)
                break


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (port in use, permission denied) inside a trio exception group, if that is all it is."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(OSError)
        if matched is not None and rest is None:
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            return first if isinstance(first, OSError) else None
    return None


def start_failure(error: OSError) -> str:
    """What to say when a service cannot start."""
    from emulator.stack import BindError

    if not isinstance(error, BindError):
        return f"cannot start: {error}"
    flag = f"--{error.service.split()[0].replace('_', '-')}-port N"
    if error.errno == errno.EADDRINUSE:
        why = (f"port {error.port} is already in use on {error.host} (another program, or another cometbench). "
               f"Stop it, choose another port with {flag}, or use --free-ports to let the system pick every port")
    elif error.errno == errno.EACCES:
        why = (f"no permission to listen on port {error.port} (ports below 1024 need privileges); "
               f"choose another with {flag} or use --free-ports")
    elif error.errno == errno.EADDRNOTAVAIL:
        why = f"{error.host} is not an address of this machine; check --host (default {DEFAULTS.host})"
    else:
        why = f"{error.error.strerror or error.error}; choose another port with {flag} or use --free-ports"
    return f"cannot start the {error.service} service on {error.host}:{error.port}: {why}"


def run_serve(args: argparse.Namespace) -> int:
    cfg, source = config_from_args(args)
    if args.verbose:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="cometbench: %(asctime)s %(message)s")
        logging.getLogger("cometbench").setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    try:
        trio.run(serve, cfg, source)
    except (OSError, BaseExceptionGroup) as exc:
        error = _os_error(exc)
        if error is None:
            raise
        print(f"cometbench: {start_failure(error)}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"cometbench: cannot open the state ({cfg.state}) or the journal ({cfg.resolved_journal_path()}): "
              f"{exc}", file=sys.stderr)
        return 1
    return 0


# --- journal ---------------------------------------------------------------------------------------


def journal_path(args: argparse.Namespace) -> Path:
    if args.path:
        path = Path(args.path)
    else:
        cfg, source = load_config(args)
        resolved = cfg.resolved_journal_path()
        if not cfg.journal:
            raise UsageError(f"the journal is off in {source} (journal = false); nothing to read")
        if resolved == ":memory:":
            raise UsageError(
                f"no journal file to read: with state ':memory:' ({source}) serve keeps the journal in memory, "
                "gone when it stops.  Start serve with --state PATH (journal.sqlite beside it) or --journal-path "
                "PATH, then read it with `cometbench journal PATH`")
        path = Path(resolved)
    if not path.is_file():
        raise UsageError(f"no journal at {path}: `cometbench serve` has not written one there yet "
                         "(is it running with this config, or was the path mistyped?)")
    return path


def format_entry(entry: dict) -> str:
    t = entry["t"] or 0.0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    ids = " ".join(f"{name}={entry[column]}" for name, column in (("dev", "dev_id"), ("user", "user_id"),
                                                                  ("conn", "conn_id"))
                   if entry[column] is not None)
    data = (entry["data"] or "").replace("\r", "\\r").replace("\n", "\\n")
    parts = [stamp, entry["service"], entry["kind"], entry["direction"] or "", ids, data]
    return "  ".join(p for p in parts if p)


def read_journal(args: argparse.Namespace, out=None) -> int:
    from emulator.journal import COLUMNS

    out = out or sys.stdout
    path = journal_path(args)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT seq FROM entries LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise UsageError(f"{path} is not a cometbench journal ({exc})") from None
    clauses, params = [], []
    if args.run and args.run != "all":
        clauses.append("run_id = ?")
        params.append(args.run)
    following_latest = False
    if not args.run:
        latest = conn.execute("SELECT run_id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1").fetchone()
        clauses.append("run_id = ?")
        params.append(latest[0] if latest else "")
        following_latest = True
    for column, values in (("kind", args.kind), ("service", args.service)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    last = 0
    try:
        while True:
            where = " AND ".join([*clauses, "seq > ?"])
            rows = conn.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM entries WHERE {where} ORDER BY seq",
                                [*params, last]).fetchall()
            for row in rows:
                entry = dict(zip(("seq", *COLUMNS), row))
                last = entry["seq"]
                out.write((json.dumps(entry) if args.json else format_entry(entry)) + "\n")
            out.flush()
            if not args.follow:
                return 0
            if following_latest and not rows:  # a new serve run writing to the same file is followed too
                newest = conn.execute("SELECT run_id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1").fetchone()
                if newest:
                    params[0] = newest[0]
            time.sleep(0.3)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `cometbench journal | head`
        sys.stdout = None  # no flush at exit on the closed pipe
        return 0
    finally:
        conn.close()


# --- run -------------------------------------------------------------------------------------------


def default_report_dir(seed: int, root: Path = Path("reports")) -> Path:
    """reports/<UTC time>-seed<N>/, with -2, -3 ... if that exists already."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = root / f"{stamp}-seed{seed}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def list_scenarios(out=None) -> int:
    from bench.scenario.loader import pack

    out = out or sys.stdout
    specs = pack()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        notes = ([] if spec.default else ["not in the default pack"]) + (["runs against a --target too"]
                                                                           if not spec.needs else [])
        text = spec.error or spec.summary
        out.write(f"{spec.name.ljust(width)}  {text}{''.join(f' ({note})' for note in notes)}\n")
    return 0


def run_scenarios(args: argparse.Namespace) -> int:
    from bench.options import IN_PROCESS, SetupError, parse_network_spec
    from bench.scenario.loader import UnknownScenario, default_pack, pack, resolve

    if args.list:
        return list_scenarios()
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    try:
        network = parse_network_spec(args.network)
    except SetupError as exc:
        raise UsageError(str(exc)) from None
    args.target_spec = None
    if args.target != IN_PROCESS:
        args.target_spec = target_arg(args.target, args.ca, args.insecure)
        if args.clock == "virtual":
            raise UsageError("--virtual with --target: a deployment keeps the wall clock (it runs in real time)")
        try:
            network.check_target()
        except SetupError as exc:
            raise UsageError(str(exc)) from None
        args.clock = "real"
    elif args.ca or args.insecure:
        raise UsageError("--ca and --insecure only apply to --target (the emulator's own CA is trusted already)")
    args.clock = args.clock or "virtual"
    if args.scenarios and args.all:
        raise UsageError("name scenarios or use --all, not both")
    if args.target_spec is not None and getattr(args, "browser", None):
        raise UsageError("--browser with --target: real browsers play actors against the in-process stack only "
                         "(the demo app's backend talks to it)")
    args.browser_settings = browser_settings(args)
    try:
        specs = resolve(args.scenarios) if args.scenarios else (pack() if args.all else default_pack())
    except UnknownScenario as exc:
        raise UsageError(str(exc)) from None
    if args.report_dir:
        report_dir = Path(args.report_dir)
        if (report_dir / "report.json").exists() or (report_dir / "journal.sqlite").exists():
            raise UsageError(f"{report_dir} already holds a run (report.json / journal.sqlite); "
                             "choose another --report-dir or remove it")
        if report_dir.exists() and not report_dir.is_dir():
            raise UsageError(f"--report-dir {report_dir} is a file, not a directory")
    else:
        report_dir = default_report_dir(args.seed)
    thresholds, baseline = report_inputs(args)
    from bench.distributed.cli import run_shards, shard_context

    shard = shard_context(args, UsageError)
    if args.target_spec is not None:
        from bench.options import probe_target

        try:
            probe_target(args.target_spec)     # a deployment that does not answer: nothing to run against
        except SetupError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "shards", None):
        return run_shards(args, report_dir, thresholds=thresholds, baseline=baseline, usage=UsageError)
    return execute_run(specs, args, report_dir, thresholds=thresholds, baseline=baseline, shard=shard)


def target_arg(text: str, ca: str | None, insecure: bool):
    """``--target SPEC`` with ``--ca`` / ``--insecure`` (run and call share it); UsageError when wrong."""
    from bench.options import SetupError, parse_target, target_with_tls

    try:
        return target_with_tls(parse_target(text), ca, insecure)
    except SetupError as exc:
        raise UsageError(str(exc)) from None


def report_inputs(args: argparse.Namespace) -> tuple:
    """The thresholds file and the baseline run of --thresholds / --baseline, checked before anything runs."""
    from bench.report.rundir import RunDirError, load_run
    from bench.report.thresholds import ThresholdError, load_thresholds

    thresholds = baseline = None
    if getattr(args, "thresholds", None):
        try:
            thresholds = load_thresholds(args.thresholds)
        except ThresholdError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "baseline", None):
        try:
            baseline = load_run(args.baseline)
        except RunDirError as exc:
            raise UsageError(f"--baseline: {exc}") from None
    return thresholds, baseline


def browser_settings(args: argparse.Namespace):
    """``--browser`` and its companions -> BrowserSettings (None without --browser)."""
    names = list(dict.fromkeys(getattr(args, "browser", []) or []))
    if not names:
        for flag, given in (("--no-shim", getattr(args, "no_shim", False)), ("--camera", getattr(args, "camera", None)),
                            ("--microphone", getattr(args, "microphone", None)),
                            ("--app", getattr(args, "app", "demo") != "demo")):
            if given:
                raise UsageError(f"{flag} applies to real browsers: name the actors with --browser ACTOR")
        return None
    if args.clock != "real":
        raise UsageError("--browser: a real browser runs on the real clock; add --real-time")
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"--browser {name!r}: an actor name (doctor, patient, nurse ...)")
    from bench.browser.profile import ProfileError, load_profile

    try:
        app = load_profile(args.app)
    except ProfileError as exc:
        raise UsageError(f"--app: {exc}") from None
    media: dict[str, Path] = {}
    for flag, value in (("camera", args.camera), ("microphone", args.microphone)):
        if value is not None:
            path = Path(value)
            if not path.is_file():
                raise UsageError(f"--{flag} {value}: no such file")
            media[flag] = path.resolve()
    from bench.browser.host import BrowserUnavailable, check_available
    from bench.browser.participant import BrowserSettings

    try:
        check_available()
    except BrowserUnavailable as exc:
        raise UsageError(f"--browser: {exc}") from None
    return BrowserSettings(actors=tuple(names), app=app, shim=False if args.no_shim else None,
                           camera=media.get("camera"), microphone=media.get("microphone"))


def execute_run(specs: list, args: argparse.Namespace, report_dir: Path, *, thresholds=None, baseline=None,
                shard=None) -> int:
    from bench.scenario.progress import make_progress, summary_lines
    from bench.scenario.runner import Run, RunSettings

    if getattr(args, "media", "model") == "real" and args.clock != "real":
        raise UsageError("--media real needs --real-time (the media worker's sockets and timers are the OS's)")
    target_spec = getattr(args, "target_spec", None)
    settings = RunSettings(seed=args.seed, clock=args.clock, network=args.network, profile=args.profile,
                           media=getattr(args, "media", "model"), repeat=args.repeat,
                           target=target_spec.describe() if target_spec is not None else args.target,
                           target_spec=target_spec, browser=getattr(args, "browser_settings", None))
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report directory {report_dir}: {exc.strerror or exc}") from None
    log_path = report_dir / "emulator.log"
    handler = _LogCounter(log_path)
    root = logging.getLogger()
    root.addHandler(handler)
    progress = make_progress()
    run = Run(specs, settings, report_dir, on_start=progress.on_start, on_result=progress.on_result)
    run.log_file = log_path       # the report names the log and counts its records
    run.log_records = handler
    run.thresholds, run.baseline = thresholds, baseline
    if shard is not None:   # bench/distributed/shard.py: this run tells one shard's calls
        shard.attach(run)
    if baseline is not None:
        from bench.report.diff import DiffSettings

        run.diff_settings = DiffSettings(tolerance=args.tolerance)
    status = 0
    # Ctrl-C stops the run with a report even when the shell started us with SIGINT ignored
    # (a background job of a script): that is what --help and the report promise
    previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    progress.begin(len(run.call_indices))
    try:
        run.execute()
    except KeyboardInterrupt:
        status = 130
    except BaseException as exc:  # a crash of the bench itself: the report says so
        if isinstance(exc, SystemExit):
            raise
        status = -1
        crash = run.interruption or f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
        progress.close()
        root.removeHandler(handler)
        handler.close()
    from bench.report.terminal import print_summary
    from bench.report.writer import exit_status

    report = json.loads(run.report_path.read_text(encoding="utf-8"))
    tail = summary_lines(report, str(run.report_path), (str(log_path), handler.error_count))
    if run.written is not None:
        tail.insert(-1, f"html: {run.written.html}  junit: {run.written.junit}")
    print_summary(report, tail)
    if run.report_error:
        print(f"cometbench: report.html and junit.xml could not be written ({run.report_error}); "
              f"`cometbench report {report_dir}` tries again", file=sys.stderr)
    if status == -1:
        print(f"cometbench: the run stopped: {crash}; the report says which scenarios did not finish",
              file=sys.stderr)
        return 1
    if status == 130:
        print("cometbench: interrupted (Ctrl-C); the report says which scenarios did not finish", file=sys.stderr)
        return 130
    if settings.browser is not None:
        played = {name for entry in report["scenarios"] for name in entry.get("browsers", [])}
        for name in settings.browser.actors:
            if name not in played:
                print(f"cometbench: --browser {name}: no scenario of this run opened a page for an actor "
                      f"called {name!r}", file=sys.stderr)
    if shard is not None:
        from bench.distributed.shard import skew_message

        late = skew_message(report.get("shard") or {})
        if late:
            print(f"cometbench: {late}", file=sys.stderr)
            return 1
    return exit_status(report)


# --- report and diff -------------------------------------------------------------------------------


def run_report(args: argparse.Namespace) -> int:
    from bench.report import rundir
    from bench.report.diff import DiffSettings
    from bench.report.terminal import print_summary
    from bench.report.writer import exit_status, write_reports
    from bench.scenario.progress import summary_lines

    thresholds, baseline = report_inputs(args)
    try:
        run = rundir.load_run(args.run_dir)
        if run.journal_problem and run.report.get("journal"):
            print(f"cometbench: warning: {run.path}: {run.journal_problem}; the HTML report has no sequence diagrams",
                  file=sys.stderr)
        written = write_reports(run.path, thresholds=thresholds, baseline=baseline,
                                diff_settings=DiffSettings(tolerance=args.tolerance))
    except rundir.RunDirError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the reports into {args.run_dir}: {exc.strerror or exc}") from None
    report = written.report
    log = report.get("emulator_log")
    tail = summary_lines(report, str(written.json),
                         (str(written.json.parent / log["path"]), log["errors"]) if log else None)
    tail.insert(-1, f"html: {written.html}  junit: {written.junit}")
    print_summary(report, tail)
    return exit_status(report)


def run_diff(args: argparse.Namespace) -> int:
    from bench.report.diff import DiffSettings, compare, diff_json, diff_lines
    from bench.report.rundir import RunDirError, load_run

    try:
        percentiles = tuple(float(p.strip().lstrip("p")) for p in args.percentiles.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"--percentiles expects numbers such as 50,90,99, got {args.percentiles!r}") from None
    if not percentiles or not all(0 < p <= 100 for p in percentiles):
        raise UsageError(f"--percentiles must be between 0 and 100, got {args.percentiles!r}")
    runs = []
    for which, path in (("RUN_A", args.run_a), ("RUN_B", args.run_b)):
        try:
            runs.append(load_run(path))
        except RunDirError as exc:
            raise UsageError(f"{which}: {exc}") from None
    a, b = runs
    settings = DiffSettings(tolerance=args.tolerance, min_delta_ms=args.min_delta, percentiles=percentiles,
                            scenario=args.scenario)
    if args.scenario:
        known = {k.scenario for k in a.metrics.histograms} | {k.scenario for k in b.metrics.histograms}
        if args.scenario not in known:
            raise UsageError(f"--scenario {args.scenario!r}: neither run measured it; they have "
                             f"{', '.join(sorted(known)) or 'no scenarios with latencies'}")
    diffs = compare(a.metrics, b.metrics, settings)
    if args.json:
        print(json.dumps(diff_json(diffs, settings, str(a.path), str(b.path)), indent=2))
    else:
        for line in diff_lines(diffs, settings, str(a.path), str(b.path), show_all=args.all):
            print(line)
    return 1 if any(d.verdict == "regression" for d in diffs) else 0


class _LogCounter(logging.FileHandler):
    """The emulator's own log records of a run (warnings and worse) go to DIR/emulator.log, not
    the terminal; the summary says how many errors there were."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.error_count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.error_count += 1
        super().emit(record)
# --- call ------------------------------------------------------------------------------------------


def run_call_command(args: argparse.Namespace) -> int:
    from bench.call import STAGE_NAMES, CallOptions, CallSetupError, run_call

    mode = "target" if args.target else (args.mode or "virtual")
    target = None
    if args.target:
        target = target_arg(args.target, args.ca, args.insecure)
    elif args.ca or args.insecure:
        raise UsageError("--ca and --insecure only apply to --target (the emulator's own CA is trusted already)")
    overrides = {name: getattr(args, name) for name in ("rtt_ms", "jitter_ms", "loss", "bandwidth_kbps")
                 if getattr(args, name) is not None}
    for stage in args.stage:
        if stage not in STAGE_NAMES:
            close = difflib.get_close_matches(stage, STAGE_NAMES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"--stage: unknown stage {stage!r}{hint} Known: {', '.join(STAGE_NAMES)}")
    options = CallOptions(seed=args.seed, network=args.network, overrides=overrides, duration=args.duration,
                          fidelity=args.profile, mode=mode, target=target, stages=tuple(args.stage),
                          journal=not args.no_journal)
    logging.getLogger("cometbench").setLevel(logging.CRITICAL)   # the summary says what matters
    try:
        result = run_call(options)
    except CallSetupError as exc:
        raise UsageError(str(exc)) from None
    for line in call_summary(result, options):
        print(f"cometbench: {line}", file=sys.stderr)
    sys.stderr.flush()
    print(result.json_line(), flush=True)
    return 0 if result.passed else 1


def call_summary(result, options) -> list[str]:
    where = {"virtual": "virtual time (in-memory network)", "real-time": "real time (loopback sockets)",
             "target": f"target {options.target.describe() if options.target else ''}"}[result.mode]
    lines = [f"call in room 101, seed {result.seed}, network {result.network}, {where}"]
    if result.names:
        lines.append(f"doctor {result.names.get('doctor', '?')}, patient {result.names.get('patient', '?')}")
    sides = result.sides
    names = [n for n in result.stages]
    if names:
        lines.append(f"{'stage':<20}{'doctor':>12}{'patient':>12}   (ms; the JSON line has the worse side)")
        for name in names:
            cells = [f"{sides.get(a, {}).get(name, float('nan')):12.1f}" for a in ("doctor", "patient")]
            lines.append(f"{name:<20}{''.join(cells)}")
    lines.append(f"simulated {result.simulated_s:.1f} s in {result.wall_s:.2f} s of wall time; journal sha256 "
                 f"{result.journal_sha256}")
    if result.passed:
        total = result.stages.get("join_total")
        lines.append("passed" + (f": both saw each other after {total / 1000:.2f} s (join_total, worse side)"
                                 if total is not None else ""))
    else:
        lines.append(f"FAILED: {result.failure}")
    return lines


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # run --shards hands it on to the shards
    try:
        if args.command == "quirks":
            import emulator.stack  # noqa: F401  (services register their quirks on import)

            print(quirks_table())
            return 0
        if args.command == "serve":
            return run_serve(args)
        if args.command == "run":
            return run_scenarios(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "diff":
            return run_diff(args)
        if args.command == "merge":
            from bench.distributed.cli import run_merge

            thresholds, baseline = report_inputs(args)
            return run_merge(args, thresholds=thresholds, baseline=baseline, default_dir=default_report_dir,
                             usage=UsageError)
        if args.command == "journal":
            return read_journal(args)
        if args.command == "call":
            return run_call_command(args)
    except UsageError as exc:
        print(f"cometbench: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`cometbench journal | head`): stop quietly, as Unix tools do
        try:
            sys.stdout = open(os.devnull, "w")  # keeps the interpreter's final flush quiet
        except OSError:
            pass
        return 141
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
