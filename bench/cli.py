"""The ``cometbench`` command.

``cometbench serve``   start the emulator; the first stdout line is the JSON ready line
``cometbench quirks``  list the fidelity quirks and their state in each profile
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from pathlib import Path

import trio

from emulator.config import DEFAULT_PORTS, Config
from emulator.profiles import PROFILE_NAMES, quirks_table


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the emulator until Ctrl-C / SIGTERM")
    p.add_argument("--config", help="TOML file (default: ./cometbench.toml if present)")
    p.add_argument("--host", help="address every listener binds (default 127.0.0.1)")
    p.add_argument("--password", help="server password: CometQL login, JWT secret prefix")
    p.add_argument("--state", help="state file, or :memory:")
    p.add_argument("--profile", choices=PROFILE_NAMES, help="fidelity profile")
    p.add_argument("--quirk", action="append", default=[], metavar="NAME=on|off",
                   help="switch one quirk on top of the profile (repeatable)")
    p.add_argument("--no-journal", action="store_true", help="do not record the journal")
    p.add_argument("--journal-path", help="journal file (default: beside the state file)")
    p.add_argument("--free-ports", action="store_true", help="bind every service to port 0")
    p.add_argument("--sip-public-host", help="serverName the sys_sipCall push advertises (default: --host)")
    p.add_argument("--sip-public-port", type=int, metavar="N", help="serverPort it advertises (default: sip_ws)")
    p.add_argument("--no-sip-tls", action="store_true", help="serve SIP over plain ws:// instead of wss://")
    p.add_argument("--no-freeswitch", action="store_true",
                   help="do not run the fake FreeSWITCH node (INSERT INTO conference then answers ERR 500)")
    p.add_argument("--esl-password", help="ESL password (default ClueCon)")
    p.add_argument("--media-link", help="link preset of fixtures/network_profiles.toml for the media model "
                                        "(default loopback; dsl, 4g, 3g, bad-wifi, lan)")
    for service in DEFAULT_PORTS:
        p.add_argument(f"--{service.replace('_', '-')}-port", type=int, metavar="N",
                       help=f"port of the {service} service (default {DEFAULT_PORTS[service]})")


def config_from_args(args: argparse.Namespace) -> Config:
    path = args.config or ("cometbench.toml" if Path("cometbench.toml").exists() else None)
    cfg = Config.from_toml(path) if path else Config()
    for name in ("host", "password", "state", "profile", "journal_path"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    if args.no_journal:
        cfg.journal = False
    if args.no_sip_tls:
        cfg.sip_tls = False
    if args.no_freeswitch:
        cfg.freeswitch_emulated = False
    for name in ("sip_public_host", "sip_public_port", "esl_password", "media_link"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    for item in args.quirk:
        name, _, state = item.partition("=")
        if state not in ("on", "off"):
            raise SystemExit(f"--quirk expects NAME=on|off, got {item!r}")
        cfg.quirks[name] = state == "on"
    if args.free_ports:
        cfg.free_ports()
    for service in DEFAULT_PORTS:
        port = getattr(args, f"{service}_port")
        if port is not None:
            cfg.ports[service] = port
    return cfg


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


async def serve(cfg: Config) -> None:
    from emulator.stack import open_stack

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_stack(cfg) as stack:
            tune_gc()
            print(json.dumps(stack.ready_line()), flush=True)
            async for _ in signals:
                print("cometbench: shutting down", file=sys.stderr, flush=True)
                break


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (port in use, permission denied) inside a trio exception group, if that is all it is."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(OSError)
        if matched is not None and rest is None:
            while isinstance(matched, BaseExceptionGroup):
                matched = matched.exceptions[0]
            return matched
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cometbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("quirks", help="list the fidelity quirks")
    args = parser.parse_args(argv)
    if args.command == "quirks":
        import emulator.stack  # noqa: F401  (services register their quirks on import)

        print(quirks_table())
        return 0
    if args.command == "serve":
        try:
            cfg = config_from_args(args)
            from emulator.stack import build_profile

            build_profile(cfg)  # validate profile and quirk names before binding anything
            from emulator.freeswitch.media import link_presets

            if cfg.media_link not in link_presets():
                raise ValueError(f"unknown --media-link {cfg.media_link!r}; known: {', '.join(sorted(link_presets()))}")
        except (ValueError, KeyError, OSError) as exc:
            print(f"cometbench: {exc}", file=sys.stderr)
            return 2
        try:
            trio.run(serve, cfg)
        except (OSError, BaseExceptionGroup) as exc:
            error = _os_error(exc)
            if error is None:
                raise
            print(f"cometbench: cannot start: {error}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
