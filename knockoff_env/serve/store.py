"""The served victim's durable state: one SQLite database (standard library, WAL mode).

It holds the owner's API keys (hashed, :mod:`.keys`), each client's counts and alarm, the
answers kept for repeated request ids (per client, bounded) and each client's detector state
(:mod:`.monitors`). ``knockoff serve --state DIR`` keeps it in ``DIR/state.db``; without a
state directory the same code runs on an in-memory database, forgotten at exit.

Durability: every answer is charged, kept and its detector state written in one transaction,
committed before the answer leaves the server. In WAL mode with ``synchronous=NORMAL`` a commit
is durable against the death of the process (SIGKILL included): the write is in the operating
system's hands once ``COMMIT`` returns. ``fsync=True`` (``synchronous=FULL``) also survives a power
loss, at the price of one fsync per answer.

One connection, shared by the server's threads under a lock; other processes (``knockoff keys``)
open their own and see committed changes at once.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATABASE = "state.db"
SCHEMA_VERSION = "1"
USAGE_FIELDS = ("charged", "eval", "requests", "repeats")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, eval INTEGER NOT NULL,
    owner INTEGER NOT NULL, created REAL NOT NULL, revoked REAL);
CREATE TABLE IF NOT EXISTS clients (name TEXT PRIMARY KEY, charged INTEGER NOT NULL DEFAULT 0,
    eval INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0, repeats INTEGER NOT NULL DEFAULT 0,
    alarm_at INTEGER);
CREATE TABLE IF NOT EXISTS answers (seq INTEGER PRIMARY KEY AUTOINCREMENT, client TEXT NOT NULL,
    request TEXT NOT NULL, digest TEXT NOT NULL, body BLOB NOT NULL, UNIQUE (client, request));
CREATE INDEX IF NOT EXISTS answers_by_client ON answers (client, seq);
CREATE TABLE IF NOT EXISTS monitors (client TEXT PRIMARY KEY, state BLOB NOT NULL);
"""


class StateStore:
    """The state database at ``DIR/state.db`` (``path=DIR``), or in memory (``path=None``)."""

    def __init__(self, path: str | Path | None = None, *, fsync: bool = False):
        self.path = None if path is None else Path(path) / DATABASE
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path or ":memory:"), isolation_level=None,
                                       check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path}: not a knockoff serve state database ({err}) — give --state a folder "
                             "of its own (it is created if missing)") from None
        self._lock = threading.RLock()
        version = self.meta("schema")
        if version is None:
            self.set_meta("schema", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise ValueError(f"{self.path} has state schema {version}, this version reads {SCHEMA_VERSION} — "
                             "serve it with the version that wrote it, or start a new --state folder")
        self.answer_bytes = int(self.one("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM answers")[0])

    # --- plumbing ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: committed on success, rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def meta(self, name: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                       (name, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- clients ---------------------------------------------------------------------------
    def usage(self, client: str | None = None) -> dict[str, dict[str, int]]:
        """``{client: {"charged", "eval", "requests", "repeats"}}``, of one client or of all."""
        where, args = ("WHERE name = ?", (client,)) if client is not None else ("", ())
        rows = self.all(f"SELECT name, {', '.join(USAGE_FIELDS)} FROM clients {where} ORDER BY name", args)
        return {row[0]: dict(zip(USAGE_FIELDS, row[1:])) for row in rows}

    def known(self, client: str) -> bool:
        return self.one("SELECT 1 FROM clients WHERE name = ?", (client,)) is not None

    def count_clients(self, prefix: str) -> int:
        return int(self.one("SELECT COUNT(*) FROM clients WHERE name LIKE ?", (prefix + "%",))[0])

    def count(self, client: str, field: str) -> int:
        """Add one to ``requests`` or ``repeats`` of ``client``; the new value."""
        if field not in ("requests", "repeats"):
            raise ValueError(f"cannot count {field!r}")
        with self.transaction() as db:
            db.execute(f"INSERT INTO clients (name, {field}) VALUES (?, 1) "
                       f"ON CONFLICT (name) DO UPDATE SET {field} = {field} + 1", (client,))
            return int(db.execute(f"SELECT {field} FROM clients WHERE name = ?", (client,)).fetchone()[0])

    def alarm(self, client: str) -> int | None:
        row = self.one("SELECT alarm_at FROM clients WHERE name = ?", (client,))
        return None if row is None else row[0]

    # --- answers and detector state -------------------------------------------------------------
    def stored(self, client: str, request: str) -> tuple[str, bytes] | None:
        """The digest of the images and the answer kept for ``client``'s ``request`` id."""
        row = self.one("SELECT digest, body FROM answers WHERE client = ? AND request = ?", (client, request))
        return None if row is None else (row[0], bytes(row[1]))

    def monitor(self, client: str) -> bytes | None:
        row = self.one("SELECT state FROM monitors WHERE client = ?", (client,))
        return None if row is None else bytes(row[0])

    def record(self, client: str, request: str, digest: str, body: bytes, *, charged: int, evaluated: int,
               monitor: bytes | None, alarm_at: int | None, keep: int, max_bytes: int) -> None:
        """Charge an answer, keep it for its request id and save the client's detector state, in one
        transaction; then drop the client's answers beyond ``keep`` and everyone's oldest beyond
        ``max_bytes`` in all."""
        with self.transaction() as db:
            db.execute("INSERT INTO clients (name, charged, eval, alarm_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET charged = charged + excluded.charged, eval = eval + excluded.eval, "
                       "alarm_at = COALESCE(alarm_at, excluded.alarm_at)", (client, charged, evaluated, alarm_at))
            newest = db.execute("INSERT INTO answers (client, request, digest, body) VALUES (?, ?, ?, ?)",
                                (client, request, digest, body)).lastrowid
            if monitor is not None:
                db.execute("INSERT INTO monitors VALUES (?, ?) ON CONFLICT (client) DO UPDATE SET state = "
                           "excluded.state", (client, monitor))
            freed = self._drop(db, "client = ? AND seq <= (SELECT seq FROM answers WHERE client = ? "
                                   "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (client, client, keep))
            total = self.answer_bytes + len(body) - freed
            while total > max_bytes:  # the oldest answers, 16 at a time, never the one just kept
                oldest = db.execute("SELECT seq FROM answers WHERE seq < ? ORDER BY seq LIMIT 16", (newest,)).fetchall()
                if not oldest:
                    break
                total -= self._drop(db, "seq <= ?", (oldest[-1][0],))
        self.answer_bytes = total

    @staticmethod
    def _drop(db: sqlite3.Connection, where: str, args: tuple) -> int:
        """Delete the answers ``where`` says; the bytes freed."""
        freed = db.execute(f"SELECT COALESCE(SUM(LENGTH(body)), 0) FROM answers WHERE {where}", args).fetchone()[0]
        db.execute(f"DELETE FROM answers WHERE {where}", args)
        return int(freed)
