"""Persistent state of the emulated comet server, in SQLite through sqlite-utils.

One table per piece of state the real server keeps in MySQL/MariaDB, every row keyed by ``dev_id``
first, so tenants never mix:

=================  =====================================================================
users_auth         (dev_id, user_id) -> hash
users_data         (dev_id, user_id) -> data
users_messages     queued personal messages: uuid, time, event, message, insertion seq
pipe_history       pipe log: uuid, time, event, message, sender user_id, insertion seq
pipes_settings     (dev_id, pipe) -> history length
revoked_tokens     (dev_id, token)
users_time         (dev_id, user_id) -> unix time of the last disconnect
conference         (dev_id, name, user_id) -> invitation: caller_id, message, profile, stream, node, time
=================  =====================================================================

Every write is committed before the method returns (autocommit, WAL journal), so whatever a client
was told was written survives a crash of the emulator process.  ``path=":memory:"`` gives a private
in-memory database for tests.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

SCHEMA_VERSION = 1


class StateStore:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; fsync per checkpoint
        self.db = sqlite_utils.Database(conn)
        self._conn = conn
        self._create()
        #: pipes_settings mirrored in memory: every ``web_pipe2`` asks for its pipe's history length,
        #: and a SQLite query per message was a tenth of the hub's work in a long call.  The table
        #: is written only through this object (set/delete/reset), which keeps the mirror in step.
        self._log_lengths: dict[tuple[int, str], int] = {
            (dev_id, pipe): length for dev_id, pipe, length in
            self._all("SELECT dev_id, pipe, length FROM pipes_settings", ())}

    # -- schema ------------------------------------------------------------------------------------
    def _create(self) -> None:
        db = self.db
        db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db.table("meta").upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
        db.table("users_auth").create({"dev_id": int, "user_id": int, "hash": str},
                                pk=("dev_id", "user_id"), if_not_exists=True)
        db.table("users_data").create({"dev_id": int, "user_id": int, "data": str},
                                pk=("dev_id", "user_id"), if_not_exists=True)
        db.table("users_messages").create(
            {"seq": int, "dev_id": int, "user_id": int, "uuid": str, "time": int, "event": str, "message": str},
            pk="seq", if_not_exists=True)
        db.table("users_messages").create_index(["dev_id", "user_id", "seq"], if_not_exists=True)
        db.table("pipe_history").create(
            {"seq": int, "dev_id": int, "pipe": str, "uuid": str, "time": int, "event": str,
             "message": str, "user_id": int},
            pk="seq", if_not_exists=True)
        db.table("pipe_history").create_index(["dev_id", "pipe", "seq"], if_not_exists=True)
        db.table("pipes_settings").create({"dev_id": int, "pipe": str, "length": int},
                                    pk=("dev_id", "pipe"), if_not_exists=True)
        db.table("revoked_tokens").create({"dev_id": int, "token": str, "time": int},
                                    pk=("dev_id", "token"), if_not_exists=True)
        db.table("users_time").create({"dev_id": int, "user_id": int, "time": int},
                                pk=("dev_id", "user_id"), if_not_exists=True)
        db.table("conference").create(  # db.sql's `conference`
            {"dev_id": int, "name": str, "user_id": int, "caller_id": int, "message": str, "profile": str,
             "stream": str, "node": str, "time": int}, pk=("dev_id", "name", "user_id"), if_not_exists=True)

    def close(self) -> None:
        self._conn.close()

    def _one(self, sql: str, params: tuple) -> tuple | None:
        return self._conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple) -> list[tuple]:
        return self._conn.execute(sql, params).fetchall()

    # -- users_auth --------------------------------------------------------------------------------
    def get_hash(self, dev_id: int, user_id: int) -> str | None:
        row = self._one("SELECT hash FROM users_auth WHERE dev_id=? AND user_id=?", (dev_id, user_id))
        return None if row is None else row[0]

    def set_hash(self, dev_id: int, user_id: int, hash_: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO users_auth (dev_id, user_id, hash) VALUES (?,?,?)",
                           (dev_id, user_id, hash_))

    def delete_hash(self, dev_id: int, user_id: int) -> bool:
        cur = self._conn.execute("DELETE FROM users_auth WHERE dev_id=? AND user_id=?", (dev_id, user_id))
        return cur.rowcount > 0

    # -- users_data --------------------------------------------------------------------------------
    def get_user_data(self, dev_id: int, user_id: int) -> str | None:
        row = self._one("SELECT data FROM users_data WHERE dev_id=? AND user_id=?", (dev_id, user_id))
        return None if row is None else row[0]

    def set_user_data(self, dev_id: int, user_id: int, data: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO users_data (dev_id, user_id, data) VALUES (?,?,?)",
                           (dev_id, user_id, data))

    def delete_user_data(self, dev_id: int, user_id: int) -> None:
        self._conn.execute("DELETE FROM users_data WHERE dev_id=? AND user_id=?", (dev_id, user_id))

    # -- users_messages (queue) --------------------------------------------------------------------
    def queue_message(self, dev_id: int, user_id: int, uuid: str, time: int, event: str, message: str) -> None:
        self._conn.execute(
            "INSERT INTO users_messages (dev_id, user_id, uuid, time, event, message) VALUES (?,?,?,?,?,?)",
            (dev_id, user_id, uuid, time, event, message))

    def queued_messages(self, dev_id: int, user_id: int, limit: int | None = None) -> list[dict]:
        sql = ("SELECT seq, uuid, time, event, message FROM users_messages WHERE dev_id=? AND user_id=? "
               "ORDER BY time, seq")
        params: tuple = (dev_id, user_id)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [dict(zip(("seq", "uuid", "time", "event", "message"), r)) for r in self._all(sql, params)]

    def delete_queued(self, dev_id: int, user_id: int, *, older_than: int | None = None,
                      seqs: list[int] | None = None) -> int:
        if seqs is not None:
            if not seqs:
                return 0
            marks = ",".join("?" * len(seqs))
            cur = self._conn.execute(
                f"DELETE FROM users_messages WHERE dev_id=? AND user_id=? AND seq IN ({marks})",
                (dev_id, user_id, *seqs))
        elif older_than is not None:
            cur = self._conn.execute("DELETE FROM users_messages WHERE dev_id=? AND user_id=? AND time<?",
                                     (dev_id, user_id, older_than))
        else:
            cur = self._conn.execute("DELETE FROM users_messages WHERE dev_id=? AND user_id=?", (dev_id, user_id))
        return cur.rowcount

    def purge_queue(self, before: int) -> int:
        return self._conn.execute("DELETE FROM users_messages WHERE time<?", (before,)).rowcount

    # -- pipe history and settings -----------------------------------------------------------------
    def pipe_log_length(self, dev_id: int, pipe: str) -> int | None:
        return self._log_lengths.get((dev_id, pipe))

    def set_pipe_log_length(self, dev_id: int, pipe: str, length: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO pipes_settings (dev_id, pipe, length) VALUES (?,?,?)",
                           (dev_id, pipe, length))
        self._log_lengths[(dev_id, pipe)] = length

    def delete_pipe_settings(self, dev_id: int, pipe: str) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM pipes_settings WHERE dev_id=? AND pipe=?", (dev_id, pipe))
            self._conn.execute("DELETE FROM pipe_history WHERE dev_id=? AND pipe=?", (dev_id, pipe))
        self._log_lengths.pop((dev_id, pipe), None)

    def append_history(self, dev_id: int, pipe: str, uuid: str, time: int, event: str, message: str,
                       user_id: int, keep: int) -> None:
        """Append one message and trim the log to the newest ``keep`` entries, atomically."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute(
                "INSERT INTO pipe_history (dev_id, pipe, uuid, time, event, message, user_id) "
                "VALUES (?,?,?,?,?,?,?)", (dev_id, pipe, uuid, time, event, message, user_id))
            self._conn.execute(
                "DELETE FROM pipe_history WHERE dev_id=? AND pipe=? AND seq NOT IN "
                "(SELECT seq FROM pipe_history WHERE dev_id=? AND pipe=? ORDER BY seq DESC LIMIT ?)",
                (dev_id, pipe, dev_id, pipe, keep))

    def history(self, dev_id: int, pipe: str, limit: int = 99) -> list[dict]:
        rows = self._all(
            "SELECT uuid, time, event, message, user_id FROM pipe_history WHERE dev_id=? AND pipe=? "
            "ORDER BY time, seq LIMIT ?", (dev_id, pipe, limit))
        return [dict(zip(("uuid", "time", "event", "message", "user_id"), r)) for r in rows]

    def delete_history(self, dev_id: int, pipe: str | None = None, uuid: str | None = None) -> int:
        if uuid is not None:
            return self._conn.execute("DELETE FROM pipe_history WHERE dev_id=? AND uuid=?", (dev_id, uuid)).rowcount
        return self._conn.execute("DELETE FROM pipe_history WHERE dev_id=? AND pipe=?", (dev_id, pipe)).rowcount

    def purge_history(self, prefix: str, before: int) -> int:
        """Drop logged messages of pipes starting with ``prefix`` stored before ``before``."""
        return self._conn.execute("DELETE FROM pipe_history WHERE substr(pipe, 1, ?)=? AND time<?",
                                  (len(prefix), prefix, before)).rowcount

    # -- revoked tokens ----------------------------------------------------------------------------
    def revoke_token(self, dev_id: int, token: str, time: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO revoked_tokens (dev_id, token, time) VALUES (?,?,?)",
                           (dev_id, token, time))

    def is_revoked(self, dev_id: int, token: str) -> bool:
        return self._one("SELECT 1 FROM revoked_tokens WHERE dev_id=? AND token=?", (dev_id, token)) is not None

    def revoked_tokens(self, dev_id: int) -> list[str]:
        return [r[0] for r in self._all("SELECT token FROM revoked_tokens WHERE dev_id=? ORDER BY rowid", (dev_id,))]

    def unrevoke_token(self, dev_id: int, token: str) -> None:
        self._conn.execute("DELETE FROM revoked_tokens WHERE dev_id=? AND token=?", (dev_id, token))

    # -- users_time --------------------------------------------------------------------------------
    def last_online(self, dev_id: int, user_id: int) -> int | None:
        row = self._one("SELECT time FROM users_time WHERE dev_id=? AND user_id=?", (dev_id, user_id))
        return None if row is None else row[0]

    def set_last_online(self, dev_id: int, user_id: int, time: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO users_time (dev_id, user_id, time) VALUES (?,?,?)",
                           (dev_id, user_id, time))

    # -- conference (invitations) ------------------------------------------------------------------
    def replace_conference(self, dev_id: int, name: str, user_id: int, caller_id: int, message: str,
                           profile: str, stream: str, node: str, time: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO conference (dev_id, name, user_id, caller_id, message, profile, stream, node, time)"
            " VALUES (?,?,?,?,?,?,?,?,?)", (dev_id, name, user_id, caller_id, message, profile, stream, node, time))

    def conference_rows(self, dev_id: int, name: str) -> list[dict]:
        cols = ("user_id", "caller_id", "message", "profile", "stream", "node", "time")
        rows = self._all(f"SELECT {', '.join(cols)} FROM conference WHERE dev_id=? AND name=? ORDER BY user_id",
                         (dev_id, name))
        return [dict(zip(cols, r)) for r in rows]

    def conference_nodes(self, dev_id: int, name: str) -> list[str]:
        return [r[0] for r in self._all("SELECT node FROM conference WHERE dev_id=? AND name=? GROUP BY node "
                                        "ORDER BY node", (dev_id, name))]

    def delete_conference(self, dev_id: int, name: str, user_id: int | None = None) -> int:
        if user_id is None:
            return self._conn.execute("DELETE FROM conference WHERE dev_id=? AND name=?", (dev_id, name)).rowcount
        return self._conn.execute("DELETE FROM conference WHERE dev_id=? AND name=? AND user_id=?",
                                  (dev_id, name, user_id)).rowcount

    # -- housekeeping ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (control plane and test resets)."""
        with self._conn:
            self._conn.execute("BEGIN")
            for table in ("users_auth", "users_data", "users_messages", "pipe_history", "pipes_settings",
                          "revoked_tokens", "users_time", "conference"):
                self._conn.execute(f"DELETE FROM {table}")
        self._log_lengths.clear()
