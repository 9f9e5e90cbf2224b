"""The documentation site builds with `mkdocs build --strict` (no broken link, no docstring the API
reference cannot read), and its generated pages come from the code: the CLI reference from the
argparse parsers, the registered ids from Gymnasium's registry."""
import os
import subprocess
import sys
from pathlib import Path

from agents.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_generated_pages(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (site / "cli" / "index.html").read_text()
    attack = build_parser()._subparsers._group_actions[0].choices["attack"]
    for action in attack._actions:  # every option of `knockoff attack` is in the reference
        assert all(option in cli for option in action.option_strings), action.option_strings
    assert "0 skips it" in cli and "knockoff serve" in cli
    env = (site / "env" / "index.html").read_text()
    assert "Action Space" in env and "Termination" in env and "Knockoff-Caltech256-v0" in env
    assert ":class:" not in env and ":meth:" not in env  # Sphinx roles shown as code
    api = (site / "api" / "env" / "index.html").read_text()
    assert "KnockoffEnv" in api and "EnvOptions" in api
    results = (site / "results" / "index.html").read_text()
    assert "env_overhead" in results  # benchmarks/RESULTS.md, included as it is
