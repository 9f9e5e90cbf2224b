"""``knockoff keys``: the API keys a served victim's owner issues to its clients (docs/serving.md).

``add NAME [--eval] [--owner]`` prints a new key once (only its SHA-256 is kept),
``list`` shows every key's rights and usage (never a key), ``revoke NAME`` refuses it from now
on, also on a server that is running on the same ``--state DIR``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from knockoff_env.serve import StateStore, issue_key, list_keys, revoke_key
from knockoff_env.serve.store import DATABASE
from knockoff_env.victim.wire import DEFAULT_KEY_ENV


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="issue, list and revoke the API keys of `knockoff serve --state DIR`",
                              description="The API keys a served victim knows its clients by. A key is printed "
                                          "once, when it is made; the state keeps only its hash.")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="issue a key for a new client and print it (once)")
    add.add_argument("name", help="the client's name (in /usage, alarms and `keys list`)")
    add.add_argument("--eval", action="store_true", help="may also make evaluation queries (counted apart)")
    add.add_argument("--owner", action="store_true", help="may read every client's usage")
    listing = actions.add_parser("list", help="every key's rights, dates and usage (never the key)")
    revoke = actions.add_parser("revoke", help="refuse a key from now on (its usage is kept)")
    revoke.add_argument("name")
    for action in (add, listing, revoke):
        action.add_argument("--state", required=True, metavar="DIR", help="the state folder of `knockoff serve`")
    p.set_defaults(func=keys)


def keys(args) -> int:
    if args.action != "add" and not (Path(args.state) / DATABASE).exists():
        raise FileNotFoundError(f"{Path(args.state) / DATABASE} not found — --state names the folder given to "
                                "`knockoff serve --state DIR` (or to `knockoff keys add`), which holds state.db")
    store = StateStore(args.state)
    try:
        if args.action == "add":
            key = issue_key(store, args.name, eval=args.eval, owner=args.owner)
            rights = ", ".join(["attack"] + ["eval"] * args.eval + ["owner"] * args.owner)
            print(f"key for {args.name!r} (rights: {rights}), shown only now; the client sets it as "
                  f"{DEFAULT_KEY_ENV}:\n{key}")
        elif args.action == "revoke":
            revoke_key(store, args.name)
            print(f"revoked {args.name!r}: refused from now on, also by a server running on {args.state}")
        else:
            print(format_keys(list_keys(store)))
    finally:
        store.close()
    return 0


def format_keys(rows: list[dict]) -> str:
    """The keys as a table of name, rights, status, created and usage."""
    if not rows:
        return "no keys: a server on this state serves anyone, each address as one client"
    header = ("name", "rights", "status", "created", "charged", "eval", "requests", "repeats")
    lines = [header]
    for row in rows:
        status = "revoked " + _date(row["revoked"]) if row["revoked"] else "active"
        lines.append((row["name"], row["rights"], status, _date(row["created"]),
                      *(str(row.get(k, 0)) for k in header[4:])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _date(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
