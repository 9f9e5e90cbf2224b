"""API keys: who a client is, and what it may do, from a secret the owner issued.

``knockoff keys add NAME [--eval] [--owner] --state DIR`` makes a random 32-byte token, prints it
once and keeps only its SHA-256 in the state database (:mod:`.store`). A client sends it as
``Authorization: Bearer KEY``; the server hashes what it receives, looks the hash up and confirms
it with :func:`hmac.compare_digest` (constant time). Since only hashes of random tokens are
compared, timing can reveal nothing about a key. Rights: every key may make attack queries
(charged); ``eval`` also evaluation queries (counted apart); ``owner`` reads every client's
usage. A revoked key is refused at once, also by a server that is running.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from .store import StateStore

PREFIX = "kn_"  # a recognisable prefix, so secret scanners and people can tell a key when they see one
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Identity:
    """A client as the server knows it: its name and its rights."""

    name: str
    eval: bool = False
    owner: bool = False

    def rights(self) -> str:
        return ", ".join(["attack"] + ["eval"] * self.eval + ["owner"] * self.owner)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"key name {name!r} is not a client name — use 1 to 64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (it names the client in /usage and in alarms)")
    return name


def issue_key(store: StateStore, name: str, *, eval: bool = False, owner: bool = False) -> str:
    """A new key for client ``name``; the token is returned once and stored only hashed."""
    check_name(name)
    token = PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as db:
        row = db.execute("SELECT revoked FROM keys WHERE name = ?", (name,)).fetchone()
        if row is not None:
            state = "was revoked (its usage stays under that name)" if row[0] else "exists"
            raise ValueError(f"a key named {name!r} {state} — choose another name")
        db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)", (name, digest(token), int(eval), int(owner),
                                                                     time.time()))
    return token


def revoke_key(store: StateStore, name: str) -> None:
    with store.transaction() as db:
        row = db.execute("SELECT revoked FROM keys WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is not None:
            known = [r[0] for r in db.execute("SELECT name FROM keys WHERE revoked IS NULL ORDER BY name")]
            raise ValueError(f"no active key named {name!r} — active keys: {', '.join(known) or 'none'}")
        db.execute("UPDATE keys SET revoked = ? WHERE name = ?", (time.time(), name))


def list_keys(store: StateStore) -> list[dict]:
    """Every key ever issued (never the secret): name, rights, created, revoked, usage."""
    usage = store.usage()
    rows = store.all("SELECT name, eval, owner, created, revoked FROM keys ORDER BY created")
    return [{"name": name, "rights": Identity(name, bool(ev), bool(ow)).rights(), "created": created,
             "revoked": revoked, **usage.get(name, {})} for name, ev, ow, created, revoked in rows]


def any_keys(store: StateStore) -> bool:
    """Whether keys were ever issued here: then every request needs one (revoking all keeps it so)."""
    return store.one("SELECT 1 FROM keys LIMIT 1") is not None


def identify(store: StateStore, token: str, extra: tuple[tuple[str, Identity], ...] = ()) -> Identity | None:
    """The active key's client, or None; ``extra``: (digest, identity) pairs held in memory only."""
    presented = digest(token)
    for known, identity in extra:
        if hmac.compare_digest(known, presented):
            return identity
    row = store.one("SELECT name, digest, eval, owner FROM keys WHERE digest = ? AND revoked IS NULL", (presented,))
    if row is None or not hmac.compare_digest(row[1], presented):
        return None
    return Identity(row[0], bool(row[2]), bool(row[3]))
