"""Writing one benchmark's section of ``benchmarks/RESULTS.md`` without touching the others."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

RESULTS = Path(os.environ.get("KNOCKOFF_RESULTS") or Path(__file__).with_name("RESULTS.md"))  # smoke runs write elsewhere
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in its title.\n"


def machine() -> str:
    """One line naming the hardware and library versions the figures were measured on."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"{device}; Python {platform.python_version()}, torch {torch.__version__}")


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``## name`` of RESULTS.md with ``body``."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"## {name}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")
    print(f"updated section '{name}' of {RESULTS}")
