"""Names on a shared deployment: each call's user ids and rooms, from its global call index.

On the in-process stack every call has a fresh emulator, so a story may call its room ``101`` and
pick user ids at random (the demo keeps a random id in ``localStorage``): nothing else is there.
Against a ``--target`` the deployment is shared -- by the calls of one run one after the other, by
the shards of a sharded run at the same time (``--shards N --target ...``, or N pods of a
Kubernetes Job), and by earlier runs whose invitations are still in its ``conference`` table.  Two
calls that used the same room would meet each other's members; two that used the same user id would
receive each other's pushes (the comet server delivers to every connection of a user id).  So,
against a target only (the in-process behaviour, and with it every virtual-time journal, is
unchanged):

* **user ids** come from the call's *global* call index (its place in the whole run, the same in a
  shard as in the unsharded run -- bench/distributed/partition.py): ``10_000_000 + 100 * call +
  n`` for the story's n-th new user (``same_user_as`` keeps the user's id; an explicit
  ``user_id=`` is taken as given).  Disjoint for every pair of calls, whichever shard tells them,
  and outside the demo's random range 100000-999999, so they cannot meet a real user of the demo
  page either.  Ids stay within the 9 digits the comet client allows: up to 9,900,000 calls of at
  most 100 users each (:data:`MAX_CALLS`, :data:`USERS_PER_CALL`).
* **rooms**: the story's room ``101`` is ``101_<tag>_<call>`` on the deployment (the room as the
  story names it stays in the timeline; the pushes, the SQL and the participants' marks carry the
  deployment's name).  ``<tag>`` names the run: five base-36 digits of its start instant in tenths
  of a second -- for a sharded run the *shared* start (the barrier's or ``--start-at``'s), so every
  shard of one run has the same tag -- which keeps a run clear of the invitations earlier runs
  left behind (the ``conference`` table keeps them until the app deletes them).  The names stay
  within the backing column's 32 characters for story rooms of up to 15, and to the characters a
  room may have, ``[A-Za-z0-9_-]``; the separator is ``_``, not ``-``: CppComet reads the room of a
  FreeSWITCH conference up to the first ``-``, so ``SELECT * FROM conference_members`` would not
  find ``101-...`` (cometql.md 9.11; the emulator does the same).

Two *independent* runs at once against one deployment would still share user ids (the ids do not
carry the tag: 9 digits leave no room for it); give them different tenants (``--target
...,dev_id=N``: tenants are kept apart).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.scenario.errors import ScenarioError

__all__ = ["CallNames", "run_tag", "USER_BASE", "USERS_PER_CALL", "MAX_CALLS", "MAX_ROOM"]

USER_BASE = 10_000_000            # above the demo's random ids (100000-999999)
USERS_PER_CALL = 100
MAX_CALLS = (1_000_000_000 - USER_BASE) // USERS_PER_CALL    # user ids keep to 9 digits
MAX_ROOM = 32                     # the conference table's name column (varchar(32))
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def run_tag(instant: float) -> str:
    """Five base-36 digits of ``instant`` (Unix seconds) in tenths of a second (a cycle of ~70 days)."""
    value = round(instant * 10) % 36 ** 5
    out = ""
    for _ in range(5):
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
    return out


@dataclass(frozen=True)
class CallNames:
    """The names one call uses on a shared deployment (see the module docstring)."""

    call: int                 # the global call index
    tag: str = ""             # the run's tag ("" when the caller gave none: rooms are <room>-<call>)

    def __post_init__(self) -> None:
        if not 0 <= self.call < MAX_CALLS:
            raise ScenarioError(f"call index {self.call}: against a target a run has at most {MAX_CALLS} calls "
                                "(user ids keep to 9 digits)")

    @property
    def suffix(self) -> str:
        return f"_{self.tag}_{self.call}" if self.tag else f"_{self.call}"

    def user_id(self, n: int) -> int:
        """The id of the story's ``n``-th new user (from 0)."""
        if not 0 <= n < USERS_PER_CALL:
            raise ScenarioError(f"against a target a call has at most {USERS_PER_CALL} users (ids come from the "
                                "call index); this story creates more")
        return USER_BASE + USERS_PER_CALL * self.call + n

    def room(self, room: str) -> str:
        """The deployment's name of the story's ``room`` (a name that is one already stays as it is)."""
        room = str(room)
        if room.endswith(self.suffix):
            return room
        name = room + self.suffix
        if len(name) > MAX_ROOM:
            raise ScenarioError(f"room {room!r} is {name!r} on the shared deployment, longer than the conference "
                                f"table's {MAX_ROOM} characters: name rooms with at most "
                                f"{MAX_ROOM - len(self.suffix)} characters")
        return name
