"""One configuration object for the whole emulator (hypercorn style).

Sources, later ones winning: built-in defaults (DESIGN.md section 5), a TOML file
(``cometbench.toml`` in the working directory, or ``--config PATH``), command-line flags.

Example ``cometbench.toml``::

    host = "127.0.0.1"
    password = "CometQLPassword"
    state = "state/cometbench.sqlite"    # or ":memory:"
    profile = "cppcomet-4.09"            # or "lenient"
    journal = true
    pipesalt = "0000000"                 # comet.ini [sip] pipesalt (salt of the callPipe hash)

    [ports]
    ws = 8087
    cometql = 3307

    [quirks]                             # per-quirk overrides on top of the profile
    queue_ten_per_login = false

    [[freeswitch]]                       # comet.ini [sip] freeswitch, one table per node
    server = "127.0.0.1"                 # ESL host (Server=)
    esl_port = 8021                      # Port=
    esl_password = "ClueCon"             # Pwd=
    ws_port = 7443                       # WSport= (default 7443)
    ws_host = "127.0.0.1"                # WShost= (default: server)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from emulator.net.timeouts import ESL_AUTH_TIMEOUT, HANDSHAKE_TIMEOUT, NEVER, SIP_TCP_HEAD_TIMEOUT, SIP_TCP_IDLE_TIMEOUT

# service name -> default port; services not built yet are listed so the flags and ready line stay stable
DEFAULT_PORTS: dict[str, int] = {
    "ws": 8087,
    "cometql": 3307,
    "sip_ws": 7443,
    "sip": 5060,
    "esl": 8021,
    "directory": 8082,
    "control": 8088,
}
#: The values of ``media``: the media model (default) or a real endpoint (emulator/freeswitch/real_media.py).
MEDIA_MODES = ("model", "real")
IMPLEMENTED_SERVICES = ("ws", "cometql", "directory", "sip_ws", "sip", "esl", "control")

# The real deployment's identities (DESIGN.md section 5), defined here once; the services' and the
# bench clients' defaults refer to these.
#: The comet server password: CometQL login, and with the dev_id appended, the JWT secret.
DEFAULT_PASSWORD = "CometQLPassword"
#: FreeSWITCH's domain: the suffix of conference names (``<dev>*<room>-FSdefaultDomain``).
DEFAULT_DOMAIN = "FSdefaultDomain"
#: mod_event_socket's password.
DEFAULT_ESL_PASSWORD = "ClueCon"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key and says what it needs."""


def check_port(where: str, value: object) -> int:
    """``value`` as a port number (0 = let the OS pick), or a :class:`ConfigError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where} must be a port number 0-65535 (0 = any free port), got {value!r}")
    return value


def _checked(key: str, value: object, default: object) -> object:
    """``value`` for the key whose built-in default is ``default``, if it has the same kind."""
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             list: "a list of tables", dict: "a table"}
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{key} must be {kinds.get(kind, kind.__name__)}, got {value!r}")
    return value


@dataclass
class Config:
    host: str = "127.0.0.1"
    password: str = DEFAULT_PASSWORD
    state: str = ":memory:"
    journal: bool = True
    journal_path: str = ""  # "" = beside the state file (journal.sqlite), or :memory: for a memory state
    profile: str = "cppcomet-4.09"
    quirks: dict[str, bool] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    node_name: str = "n1"
    seed: int = 0
    run_id: str = ""                      # the journal's run id ("": seeded in virtual time, random in real time)
    epoch: float = 1_767_225_600.0       # virtual time only: the Unix time a run starts at (2026-01-01)
    # comet.ini [sip]: FreeSWITCH nodes (keys of emulator.cometql.conference.FreeswitchNode); none means
    # INSERT INTO conference answers ERR 500, as a CppComet without `[sip] freeswitch`
    freeswitch: list[dict] = field(default_factory=list)
    pipesalt: str = "0000000"  # the shipped comet.ini's value (the code default is "pipesalt")
    # the comet side run in this process (WebSocket push, CometQL, the directory endpoint); false: the
    # fake FreeSWITCH alone, as the FreeSWITCH node of a real (or another emulated) comet server
    comet_emulated: bool = True
    # where the fake FreeSWITCH looks SIP passwords up (mod_xml_curl's gateway-url: GET <url>/directory?
    # ...&user=...); "" = the in-process comet side's users_auth.  Required when comet_emulated is false.
    directory_url: str = ""
    # the fake FreeSWITCH node run in this process (SIP over WSS/WS/UDP/TCP, ESL, mod_conference)
    freeswitch_emulated: bool = True     # when [[freeswitch]] is empty, it becomes the comet server's node
    sip_public_host: str = ""            # serverName the sys_sipCall push advertises ("" = host)
    sip_public_port: int = 0             # serverPort it advertises (0 = the bound sip_ws port)
    sip_tls: bool = True                 # the real client always dials wss://; False serves plain ws
    sip_answer_delay: float = 0.0        # seconds between 100 Trying and the 200 (0 = FreeSWITCH's answer)
    esl_password: str = DEFAULT_ESL_PASSWORD
    fs_domain: str = DEFAULT_DOMAIN
    rtp_timeout: float = 300.0           # rtp-timeout-sec: how long a vanished member stays (ghost)
    certs_dir: str = ""                  # "" = certs/ beside the state file, a temporary dir for :memory:
    recordings_dir: str = ""             # "" = recordings/ beside the state file, or a temporary dir
    conference_profiles: str = ""        # conference.conf.xml to load ("" = fixtures/conference.conf.xml)
    media_link: str = "loopback"         # link preset (fixtures/network_profiles.toml) for the media model
    # "model": no media endpoint, the media start comes from the media model (the default); "real": a
    # real WebRTC endpoint in a media worker process (emulator/freeswitch/real_media.py; needs the
    # `media` extra: aiortc, aioice, av; real time only)
    media: str = "model"
    # Timeouts of the fake FreeSWITCH's listeners (seconds; 0 = never).  The comet WebSocket, CometQL,
    # the directory and the SIP-over-WS handshake use handshake_timeout.  docs/decisions.md, "Timeouts",
    # says where each one follows the real servers and where it differs.
    # SIP over TCP: a message must be complete this long after its first byte, and a new connection
    # must deliver its first one this soon
    sip_tcp_head_timeout: float = SIP_TCP_HEAD_TIMEOUT
    sip_tcp_idle_timeout: float = SIP_TCP_IDLE_TIMEOUT  # SIP over TCP: quiet both ways -> closed (sofia's 30 min)
    sip_ws_idle_timeout: float = NEVER   # SIP over WS(S) after the upgrade (sofia's WS transport: never)
    esl_auth_timeout: float = ESL_AUTH_TIMEOUT  # ESL: auth must succeed this soon after connect (mod_event_socket: 25)
    esl_idle_timeout: float = NEVER      # ESL after auth: no command this long -> closed (FreeSWITCH: never)
    # the control plane of `cometbench serve` (emulator/control/): REST API, dashboard, /metrics
    control: bool = True
    control_host: str = "127.0.0.1"      # loopback only unless set: it can drop clients and reset state
    control_token: str = ""              # Authorization: Bearer <token>; "" = a random one printed at start

    def free_ports(self) -> None:
        """Bind every service to port 0 (the OS picks)."""
        self.ports = {name: 0 for name in self.ports}

    def resolved_journal_path(self) -> str:
        if self.journal_path:
            return self.journal_path
        if self.state == ":memory:":
            return ":memory:"
        return str(Path(self.state).with_name("journal.sqlite"))

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        cfg = cls()
        known = {f.name for f in fields(cls)}
        for key, value in data.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown configuration key {key!r}; known keys: {', '.join(sorted(known))}")
            value = _checked(key, value, getattr(cfg, key))
            if key == "ports":
                assert isinstance(value, dict)   # _checked: the same kind as the default
                for service, port in value.items():
                    service = service.replace("-", "_")
                    if service not in DEFAULT_PORTS:
                        raise ConfigError(f"unknown service {service!r} in [ports]; known: {', '.join(DEFAULT_PORTS)}")
                    cfg.ports[service] = check_port(f"[ports] {service}", port)
            elif key == "quirks":
                assert isinstance(value, dict)
                cfg.quirks = {k: bool(_checked(f"[quirks] {k}", v, True)) for k, v in value.items()}
            else:
                setattr(cfg, key, value)
        check_port("sip_public_port", cfg.sip_public_port)
        cfg.check_parts()
        return cfg

    def check_parts(self) -> None:
        """The emulator in parts: something must run, and a FreeSWITCH alone needs a directory URL."""
        if self.media not in MEDIA_MODES:
            raise ConfigError(f"media must be one of {', '.join(MEDIA_MODES)}, got {self.media!r}")
        if not self.comet_emulated and not self.freeswitch_emulated:
            raise ConfigError("comet_emulated and freeswitch_emulated are both false: nothing would run")
        if not self.comet_emulated and self.freeswitch_emulated and not self.directory_url:
            raise ConfigError("a FreeSWITCH without the comet side (comet_emulated = false) needs directory_url, "
                              "the comet server's directory endpoint, e.g. directory_url = \"http://127.0.0.1:8082\"")
        if self.directory_url:
            from emulator.freeswitch.directory_client import parse_directory_url

            try:
                parse_directory_url(self.directory_url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
