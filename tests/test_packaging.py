"""Packaging without warnings: the build backend reads pyproject.toml with every warning an error
(the licence is an SPDX string, not the table setuptools deprecates), and the metadata carries the
licence, the `knockoff` command and the extras the documentation lists."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "runs", "site", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache",
              ".hypothesis")


def test_the_build_backend_reads_the_project_without_a_warning(tmp_path):
    source = tmp_path / "clone"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    (tmp_path / "meta").mkdir()
    done = subprocess.run([sys.executable, "-W", "error", "-c", "from setuptools import build_meta as b; "
                           f"print(b.prepare_metadata_for_build_wheel({str(tmp_path / 'meta')!r}))"],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deprecat" not in (done.stdout + done.stderr).lower()
    info = tmp_path / "meta" / done.stdout.strip().splitlines()[-1]
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    extras = {line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Provides-Extra: ")}
    assert extras == {"sb3", "hub", "serve", "sweep", "duel", "bench", "docs", "dev"}
    assert "knockoff = agents.cli:main" in (info / "entry_points.txt").read_text()
    guide = (ROOT / "docs" / "getting-started.md").read_text()
    assert all(f"| `{extra}` |" in guide for extra in extras)  # every extra is documented
