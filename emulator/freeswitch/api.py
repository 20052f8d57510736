"""The conference API of the fake FreeSWITCH: ``api conference ...`` as mod_conference answers it.

``conference list|xml_list`` and ``conference <name> <command> ...`` with two tables of commands:

* **member commands** (:data:`MEMBER_COMMANDS`) take a target ``<id>|all|last|non_moderator`` and
  act on each member it names: ``mute``, ``tmute``, ``unmute``, ``vmute``, ``tvmute``, ``unvmute``,
  ``deaf``, ``undeaf``, ``kick``, ``hup``, ``floor``, ``energy``, ``volume_in``, ``volume_out``;
* **conference commands** (:data:`CONFERENCE_COMMANDS`): ``list``, ``xml_list``, ``record``,
  ``chkrecord``, ``norecord``, ``recording``, ``get``, ``set``.

Each row is the command's name, its usage line (what FreeSWITCH prints for ``help`` and for a
command it cannot run) and its action.  Replies are FreeSWITCH 1.6's (``OK mute 7``, ``Non-Existant
ID 9``, ``hup`` prints nothing) while the quirk ``fs_reply_without_plus`` is on, and the 1.8+ forms
(``+OK mute 7``, ``-ERR Member: 9 not found.``) when it is off (:data:`REPLIES`).  There is no
``count`` sub-command in FreeSWITCH (``list count`` and ``get count`` are the real ones), so
``conference <name> count`` gets ``Conference command 'count' not found.`` as it would there.
``xml_list`` is rendered by :mod:`emulator.wire.xml` in switch_xml_toxml's layout.

Kicked and hung-up members leave after the whole command has run (as mod_conference collects
them), so ``kick all`` answers for every member first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.freeswitch.model import Conference, HangupCause, Member, Recording, tenant_ids
from emulator.wire.cnum import c_atoui, c_strtol
from emulator.wire.esl import url_encode
from emulator.wire.xml import XmlNode, render_xml

if TYPE_CHECKING:  # pragma: no cover
    from emulator.freeswitch.conference import Bridge

__all__ = ["ConferenceApi", "MemberCommand", "ConferenceCommand", "MEMBER_COMMANDS", "CONFERENCE_COMMANDS",
           "REPLIES"]

# (FreeSWITCH 1.6, 1.8+) reply templates
REPLIES: dict[str, tuple[str, str]] = {
    "ok": ("OK {text}\n", "+OK {text}\n"),
    "member_not_found": ("Non-Existant ID {id}\n", "-ERR Member: {id} not found.\n"),
    "conf_not_found": ("Conference {name} not found\n", "-ERR Conference {name} not found\n"),
    "no_conferences": ("No active conferences.\n", "+OK No active conferences.\n"),
    "hup": ("", "+OK hup {id}\n"),
    "floor_held": ("ERR floor is held by {id}\n", "-ERR floor is held by {id}\n"),
}

#: Members a command ends: (member, cause), acted on once the command has answered for every target.
Leaving = list[tuple[Member, str]]


def _tf(flag: bool) -> str:
    return "true" if flag else "false"


# --- member commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberCommand:
    """``conference <name> <name> <target> [<data>]``: ``run(api, member, data, leaving)`` -> reply."""

    name: str
    usage: str
    run: Callable[[ConferenceApi, Member, str | None, Leaving], str]


def _mute(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
    m.can_speak = False
    if m.talking:   # mod_conference clears the flag without a stop-talking event
        api.bridge.recorder.catch_up(m.conference)
        m.talking, m.score, m.last_talking = False, 0, api.bridge.now()
    reply = api.reply("ok", text=f"mute {m.id}")
    api.bridge.emit(m.conference, "mute-member", member=m)
    api.bridge.update_floor(m.conference)
    return reply


def _flag(attr: str, value: bool, word: str) -> Callable[[ConferenceApi, Member, str | None, Leaving], str]:
    """The plain flag commands: set the member flag, reply ``OK <word> <id>``, fire ``<word>-member``."""

    def run(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
        setattr(m, attr, value)
        reply = api.reply("ok", text=f"{word} {m.id}")
        api.bridge.emit(m.conference, f"{word}-member", member=m)
        return reply

    return run


def _toggle(attr: str, when_on: str, when_off: str) -> Callable[[ConferenceApi, Member, str | None, Leaving], str]:
    """tmute / tvmute: the ``when_on`` command while the flag is set, else ``when_off``."""

    def run(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
        command = MEMBER_COMMANDS[when_on if getattr(m, attr) else when_off]
        return command.run(api, m, data, leaving)

    return run


def _kick(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
    m.kicked = True
    reply = api.reply("ok", text=f"kicked {m.id}")
    api.bridge.emit(m.conference, "kick-member", member=m)
    leaving.append((m, HangupCause.NORMAL_CLEARING))
    return reply


def _hup(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
    api.bridge.emit(m.conference, "hup-member", member=m)
    leaving.append((m, HangupCause.NORMAL_CLEARING))
    return api.reply("hup", id=m.id)


def _floor(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
    conf, bridge = m.conference, api.bridge
    if conf.floor_holder is m:
        bridge.set_floor(conf, None)
        reply = api.reply("ok", text="floor none")
        bridge.update_floor(conf)   # the frame loop hands a free floor to a member again
        return reply
    if conf.floor_holder is None:
        bridge.set_floor(conf, m)
        return api.reply("ok", text=f"floor {m.id}")
    return api.reply("floor_held", id=conf.floor_holder.id)


def _energy(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
    if data is not None:
        if data.lower() == "up":
            m.energy_level = min(1800, m.energy_level + 200)
        elif data.lower() == "down":
            m.energy_level = max(0, m.energy_level - 200)
        else:
            m.energy_level = c_strtol(data) or 0
    reply = f"Energy {m.id} = {m.energy_level}\n"
    if data is not None:
        api.bridge.emit(m.conference, "energy-level-member", member=m, extra=[("Energy-Level", str(m.energy_level))])
    return reply


def _volume(attr: str, label: str, action: str) -> Callable[[ConferenceApi, Member, str | None, Leaving], str]:
    """volume_in / volume_out: ``up``, ``down`` or a number, clamped to -4..4."""

    def run(api: ConferenceApi, m: Member, data: str | None, leaving: Leaving) -> str:
        if data is not None:
            value: int = getattr(m, attr)
            if data.lower() == "up":
                value += 1
            elif data.lower() == "down":
                value -= 1
            else:
                value = c_strtol(data) or 0
            setattr(m, attr, max(-4, min(4, value)))
        reply = f"{label} {m.id} = {getattr(m, attr)}\n"
        if data is not None:
            api.bridge.emit(m.conference, action, member=m, extra=[("Volume-Level", str(getattr(m, attr)))])
        return reply

    return run


_MUTE_TARGETS = "<[member_id|all]|last|non_moderator>"
MEMBER_COMMANDS: dict[str, MemberCommand] = {c.name: c for c in (
    MemberCommand("mute", f"mute {_MUTE_TARGETS} [<quiet>]", _mute),
    MemberCommand("tmute", f"tmute {_MUTE_TARGETS} [<quiet>]", _toggle("can_speak", "mute", "unmute")),
    MemberCommand("unmute", f"unmute {_MUTE_TARGETS} [<quiet>]", _flag("can_speak", True, "unmute")),
    MemberCommand("vmute", f"vmute {_MUTE_TARGETS} [<quiet>]", _flag("can_be_seen", False, "vmute")),
    MemberCommand("tvmute", f"tvmute {_MUTE_TARGETS} [<quiet>]", _toggle("can_be_seen", "vmute", "unvmute")),
    MemberCommand("unvmute", f"unvmute {_MUTE_TARGETS} [<quiet>]", _flag("can_be_seen", True, "unvmute")),
    MemberCommand("deaf", f"deaf {_MUTE_TARGETS}", _flag("can_hear", False, "deaf")),
    MemberCommand("undeaf", f"undeaf {_MUTE_TARGETS}", _flag("can_hear", True, "undeaf")),
    MemberCommand("kick", "kick <[member_id|all|last|non_moderator]> [<optional sound file>]", _kick),
    MemberCommand("hup", "hup <[member_id|all|last|non_moderator]>", _hup),
    MemberCommand("floor", "floor <member_id|last>", _floor),
    MemberCommand("energy", "energy <member_id|all|last|non_moderator> [<newval>]", _energy),
    MemberCommand("volume_in", "volume_in <member_id|all|last|non_moderator> [<newval>]",
                  _volume("volume_in", "Volume IN", "volume-in-member")),
    MemberCommand("volume_out", "volume_out <member_id|all|last|non_moderator> [<newval>]",
                  _volume("volume_out", "Volume OUT", "volume-out-member")),
)}


# --- conference commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConferenceCommand:
    """``conference <name> <name> ...``: ``run(api, conference, argv)`` -> reply, or None for the usage line."""

    name: str
    usage: str
    run: Callable[[ConferenceApi, Conference, list[str]], str | None]


def _list(api: ConferenceApi, conf: Conference, argv: list[str]) -> str:
    delim, count_only, _ = _list_options(argv, 2)
    if count_only:
        return str(conf.count)
    return "".join(_member_line(m, delim) for m in conf.members)


def _xml_list(api: ConferenceApi, conf: Conference, argv: list[str]) -> str:
    return api.xml_list([conf])


def _record(api: ConferenceApi, conf: Conference, argv: list[str]) -> str | None:
    if len(argv) <= 2:
        return None
    reply = f"Record file {argv[2]}\n"
    api.bridge.recorder.start(conf, argv[2], autorec=False)
    return reply


def _norecord(api: ConferenceApi, conf: Conference, argv: list[str]) -> str | None:
    if len(argv) <= 2:
        return None
    everything = argv[2].lower() == "all"
    out, stopping = [], []
    for rec in conf.recordings:
        if everything or rec.path == argv[2]:
            if rec.autorec:
                out.append(f"Stopped AUTO recording file {rec.path} (Auto Recording Now Disabled)\n")
                conf.auto_record = None
            else:
                out.append(f"Stopped recording file {rec.path}\n")
            stopping.append(rec)
    before = conf.record_count
    if not stopping and not everything:
        out.append(f"non-existant recording '{argv[2]}'\n")
    else:
        api.bridge.emit(conf, "stop-recording", extra=[
            ("Path", "all" if everything else argv[2]),
            ("Other-Recordings", _tf(before - len(stopping) > 0))])
    for rec in stopping:
        api.bridge.recorder.stop(conf, rec)
    stopped = before - conf.record_count
    out.append(f"Stopped recording {stopped} file{'' if stopped == 1 else 's'}\n")
    return "".join(out)


def _chkrecord(api: ConferenceApi, conf: Conference, argv: list[str]) -> str:
    recs = conf.recordings
    if not recs:
        return "Conference is not being recorded.\n"
    return "".join(f"Record file {r.path}{' (Auto)' if r.autorec else ''}\n" for r in reversed(recs))


def _recording(api: ConferenceApi, conf: Conference, argv: list[str]) -> str | None:
    if len(argv) == 3 and argv[2].lower() in ("stop", "check"):
        argv = [*argv, "all"]
    if len(argv) <= 3:
        return _record(api, conf, argv)
    action = argv[2].lower()
    if action == "start":
        return _record(api, conf, [argv[0], "record", argv[3]])
    if action == "stop":
        return _norecord(api, conf, [argv[0], "norecord", argv[3]])
    if action == "check":
        return _chkrecord(api, conf, argv)
    return None


def _get(api: ConferenceApi, conf: Conference, argv: list[str]) -> str | None:
    if len(argv) != 3:
        return None
    values = {
        "run_time": str(int(api.bridge.now()) - conf.run_time), "count": str(conf.count),
        "count_ghosts": str(conf.count_ghosts), "max_members": str(conf.max_members), "rate": str(conf.rate),
        "profile_name": conf.profile_name, "sound_prefix": conf.sound_prefix,
        "caller_id_name": conf.caller_id_name, "caller_id_number": conf.caller_id_number, "is_locked": "",
        "endconference_grace_time": str(conf.endconf_grace_time), "uuid": conf.uuid, "wait_mod": "",
    }
    return values.get(argv[2].lower())


def _set(api: ConferenceApi, conf: Conference, argv: list[str]) -> str | None:
    if len(argv) != 4 or not argv[3]:
        return None
    key, value = argv[2].lower(), argv[3]
    if key in ("max_members", "endconference_grace_time"):
        number = c_strtol(value)
        number = 0 if number is None else number
        if number < 0:
            return None
        if key == "max_members":
            old, conf.max_members = conf.max_members, number
        else:
            old, conf.endconf_grace_time = conf.endconf_grace_time, number
        return str(old)
    if key in ("sound_prefix", "caller_id_name", "caller_id_number"):
        previous: str = getattr(conf, key)
        setattr(conf, key, value)
        return previous
    return None


CONFERENCE_COMMANDS: dict[str, ConferenceCommand] = {c.name: c for c in (
    ConferenceCommand("list", "list [delim <string>]|[count]", _list),
    ConferenceCommand("xml_list", "xml_list ", _xml_list),
    ConferenceCommand("record", "record <filename>", _record),
    ConferenceCommand("chkrecord", "chkrecord <confname>", _chkrecord),
    ConferenceCommand("norecord", "norecord <[filename|all]>", _norecord),
    ConferenceCommand("recording", "recording [start|stop|check|pause|resume] [<filename>|all]", _recording),
    ConferenceCommand("get", "get <parameter-name>", _get),
    ConferenceCommand("set", "set <max_members|sound_prefix|caller_id_name|caller_id_number|endconference_grace_time> "
                             "<value>", _set),
)}


# --- list output ---------------------------------------------------------------------------------


def _member_line(m: Member, delim: str) -> str:
    conf = m.conference
    flags = [name for name, on in (
        ("hear", m.can_hear), ("speak", m.can_speak), ("talking", m.talking), ("video", m.has_video),
        ("floor", conf.floor_holder is m), ("vid-floor", conf.video_floor_holder is m),
        ("moderator", m.moderator), ("ghost", m.ghost)) if on]
    ch = m.channel
    return (f"{m.id}{delim}{ch.channel_name}{delim}{ch.uuid}{delim}{ch.caller_id_name}{delim}"
            f"{ch.caller_id_number}{delim}{'|'.join(flags)}{delim}{m.volume_in}{delim}0{delim}"
            f"{m.volume_out}{delim}{m.energy_level}\n")


def _conference_flags(conf: Conference) -> str:
    flags = ["running", "answered", "dynamic", "exit_sound", "enter_sound"]
    if conf.record_count > 0:
        flags.append("recording")
    flags.append("json_status")
    return "|".join(flags)


def _list_options(argv: list[str], offset: int) -> tuple[str, bool, bool]:
    delim, count_only, summary = ";", False, False
    if len(argv) > offset:
        opt = argv[offset].lower()
        if opt == "delim" and len(argv) > offset + 1:
            delim = argv[offset + 1]
            if delim.startswith('"'):
                delim = delim[1:].split('"', 1)[0] or ";"
        elif opt == "count":
            count_only = True
        elif opt == "summary":
            summary = True
    return delim, count_only, summary


# --- the API -------------------------------------------------------------------------------------


class ConferenceApi:
    """``api conference ...`` on one node's bridge."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def reply(self, key: str, **kw: Any) -> str:
        """A reply in the node's form (:data:`REPLIES`: 1.6 while ``fs_reply_without_plus`` is on)."""
        legacy, modern = REPLIES[key]
        return (modern if self.bridge.plus_replies else legacy).format(**kw)

    def __call__(self, command_line: str) -> str:
        """The reply to ``command_line`` (the leading word ``conference`` optional); journaled."""
        text = command_line.strip()
        head, _, rest = text.partition(" ")
        if head.lower() == "conference":
            text = rest.strip()
        argv = [a for a in text.split(" ") if a]
        reply = self._run(argv)
        journal = self.bridge.journal
        if journal.enabled:
            dev_id, _ = tenant_ids(argv[0] if argv else "", None)
            journal.record("freeswitch", "api", direction="in", dev_id=dev_id,
                           data=f"conference {text} -> {reply[:200]!r}")
        return reply

    @staticmethod
    def usage() -> str:
        lines = [f"<conf name> {c.usage}\n" for c in CONFERENCE_COMMANDS.values()]
        lines += [f"<conf name> {c.usage}\n" for c in MEMBER_COMMANDS.values()]
        return "".join(lines)

    def _run(self, argv: list[str]) -> str:
        if not argv:
            return self.usage()
        conf = self.bridge.conferences.get(argv[0])
        if conf is not None:
            if len(argv) < 2:
                return "Conference command, not specified.\nTry 'help'\n"
            return self._dispatch(conf, argv)
        word = argv[0].lower()
        if word == "list":
            return self.list_all(argv)
        if word == "xml_list":
            return self.xml_list(list(self.bridge.conferences.values()))
        if word in ("help", "commands"):
            return self.usage()
        return self.reply("conf_not_found", name=argv[0])

    def _dispatch(self, conf: Conference, argv: list[str]) -> str:
        name = argv[1].lower()
        member_command = MEMBER_COMMANDS.get(name)
        if member_command is not None:
            return self._member_command(conf, member_command, argv)
        command = CONFERENCE_COMMANDS.get(name)
        if command is None:
            return f"Conference command '{argv[1]}' not found.\n"
        result = command.run(self, conf, argv)
        return result if result is not None else command.usage

    def _member_command(self, conf: Conference, command: MemberCommand, argv: list[str]) -> str:
        target = argv[2] if len(argv) > 2 else None
        data = argv[3] if len(argv) > 3 else None
        leaving: Leaving = []      # kicked / hung-up members leave after the loop
        member_id = c_atoui(target)
        out: list[str] = []
        if target is not None and member_id == 0 and target.lower() in ("all", "non_moderator"):
            non_mod = target.lower() == "non_moderator"
            for m in list(conf.members):
                if non_mod and m.moderator:
                    continue
                out.append(command.run(self, m, data, leaving))
        elif target is not None and member_id == 0 and target.lower() == "last":
            # the node with the highest id; when that is a recording node, nothing happens (as in FS)
            newest = max(conf.nodes, key=lambda n: n.id, default=None)
            if isinstance(newest, Member) and not newest.left:
                out.append(command.run(self, newest, data, leaving))
        elif member_id:
            target_member = self.bridge.member(member_id)
            if (target_member is None or target_member.conference is not conf or target_member.kicked
                    or target_member.left):
                out.append(self.reply("member_not_found", id=member_id))
            else:
                out.append(command.run(self, target_member, data, leaving))
        else:
            out.append(command.usage)
        for m, cause in leaving:
            self.bridge.remove_member(m, cause, hangup=True)
        return "".join(out)

    # -- list / xml_list -------------------------------------------------------------------------------
    def list_all(self, argv: list[str]) -> str:
        delim, _, summary = _list_options(argv, 1)
        out = []
        conferences = self.bridge.conferences
        for conf in conferences.values():
            n = conf.count
            out.append(f"Conference {conf.name} ({n} member{'' if n == 1 else 's'} rate: {conf.rate} "
                       f"flags: {_conference_flags(conf)})\n")
            if not summary:
                out.extend(_member_line(m, delim) for m in conf.members)
        if not conferences:
            out.append(self.reply("no_conferences"))
        return "".join(out)

    def xml_list(self, conferences: list[Conference]) -> str:
        root = XmlNode("conferences")
        now_s = int(self.bridge.now())
        for conf in conferences:
            attrs = [("name", conf.name), ("member-count", str(conf.count)), ("ghost-count", str(conf.count_ghosts)),
                     ("rate", str(conf.rate)), ("uuid", conf.uuid), ("running", "true"), ("answered", "true"),
                     ("dynamic", "true"), ("exit_sound", "true"), ("enter_sound", "true")]
            if conf.max_members > 0:
                attrs.append(("max_members", str(conf.max_members)))
            if conf.record_count > 0:
                attrs.append(("recording", "true"))
            if conf.endconf_grace_time > 0:
                attrs.append(("endconference_grace_time", str(conf.endconf_grace_time)))
            attrs.append(("run_time", str(now_s - conf.run_time)))
            x_conf = XmlNode("conference", attrs)
            root.children.append(x_conf)
            x_members = x_conf.add("members")
            for node in conf.nodes:
                if isinstance(node, Recording):
                    x_member = x_members.add("member", attrs=[("type", "recording_node")])
                    x_member.add("record_path", node.path)
                    x_member.add("join_time", str(node.start_epoch), attrs=[("type", "UNIX-epoch")])
                    continue
                m, ch = node, node.channel
                x_member = x_members.add("member", attrs=[("type", "caller")])
                x_member.add("id", str(m.id))
                x_flags = x_member.add("flags")
                for name, on in (("can_hear", m.can_hear), ("can_speak", m.can_speak),
                                 ("mute_detect", m.mute_detect), ("talking", m.talking),
                                 ("has_video", m.has_video), ("video_bridge", m.video_bridge),
                                 ("has_floor", conf.floor_holder is m), ("is_moderator", m.moderator),
                                 ("end_conference", m.end_conference), ("is_ghost", m.ghost)):
                    x_flags.add(name, _tf(on))
                x_member.add("uuid", url_encode(ch.uuid))
                x_member.add("caller_id_name", url_encode(ch.caller_id_name))
                x_member.add("caller_id_number", url_encode(ch.caller_id_number))
                x_member.add("join_time", str(now_s - m.join_time))
                if m.talking:
                    last = "0"
                elif m.last_talking is not None:
                    last = str(now_s - int(m.last_talking))
                else:
                    last = "N/A"
                x_member.add("last_talking", last)
                x_member.add("energy", str(m.energy_level))
                x_member.add("volume_in", str(m.volume_in))
                x_member.add("volume_out", str(m.volume_out))
        return render_xml(root)
