"""MkDocs hook: the pages written from the code at build time, so they cannot drift from it.

* ``cli.md``: the command-line reference, from the argparse parsers (``agents.cli.build_parser``):
  every subcommand's description, usage and options with their defaults.
* ``<!-- registered-ids -->`` in a page: the table of the env ids ``import knockoff_env``
  registers, with their entry points and default options.
* Sphinx roles left in docstrings (``:class:`~a.B```) are shown as plain code in the API reference.
* Pages other helpers write (``OPTIONAL``) join the nav once they exist.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = {"strategies.md", "duel.md"}
ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)</code>")


def on_config(config):
    sys.path.insert(0, str(ROOT))  # the checkout being documented, not an installed copy
    docs = Path(config["docs_dir"])
    config["nav"] = _present(config["nav"], docs)
    return config


def _present(nav: list, docs: Path) -> list:
    """The nav without the optional pages that are not written yet."""
    kept = []
    for entry in nav:
        (title, target), = entry.items() if isinstance(entry, dict) else (("", entry),)
        if isinstance(target, list):
            kept.append({title: _present(target, docs)})
        elif target not in OPTIONAL or (docs / target).exists():
            kept.append(entry)
    return kept


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace("<!-- registered-ids -->", registered_ids())


def on_page_content(html: str, page, config, files) -> str:
    return ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)


# --- the command-line reference ------------------------------------------------------------
def cli_reference() -> str:
    from agents.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in commands._choices_actions}
    out = ["# Command line", "",
           "Generated from the parsers of `knockoff` (`agents.cli`) when the site is built. "
           "Every command also prints this with `--help`.", "",
           "```text", "knockoff [--debug] COMMAND [options]", "```", "",
           "| command | what it does |", "|---|---|",
           *(f"| [`{name}`](#knockoff-{name}) | {_escape(summaries.get(name) or '')} |" for name in commands.choices),
           "", _options(parser)]
    for name, sub in commands.choices.items():
        out += ["", f"## knockoff {name}", "", _escape(sub.description or summaries.get(name) or ""), "",
                "```text", _usage(sub), "```", "", _options(sub)]
    return "\n".join(out) + "\n"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=78)  # as wide as the page's code blocks
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _options(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog)
    rows = ["| argument | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action.choices, dict):
            text = f"one of {', '.join(f'`{c}`' for c in action.choices)}" + (f": {text}" if text else "")
        if not action.option_strings:
            invocation = action.metavar or action.dest.upper()
        elif action.nargs == 0:
            invocation = ", ".join(action.option_strings)
        else:
            invocation = ", ".join(action.option_strings) + " " + (action.metavar or action.dest.upper())
        rows.append(f"| `{invocation}` | {_escape(text)} |")
    return "\n".join(rows)


def _escape(text: str) -> str:
    """Table- and Markdown-safe text: pipes escaped, angle brackets and stars shown as typed, outside
    code spans (which the choices use)."""
    parts = re.split(r"(`+[^`]*`+)", text)
    return "".join(p if p.startswith("`") else
                   p.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*") for p in parts)


# --- the registered env ids ------------------------------------------------------------------
def registered_ids() -> str:
    import importlib
    import inspect

    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)

    rows = ["| id | the world | made by |", "|---|---|---|"]
    for env_id, spec in sorted(gym.registry.items()):
        if not env_id.startswith("Knockoff-"):
            continue
        module, name = spec.entry_point.split(":")
        doc = inspect.getdoc(getattr(importlib.import_module(module), name)) or ""
        what = doc.split("\n\n")[0].replace("\n", " ").replace(f"``{env_id}``", "").lstrip(":. ")
        rows.append(f"| `{env_id}` | {_escape(what)} | `{name}` |")
    return "\n".join(rows)
