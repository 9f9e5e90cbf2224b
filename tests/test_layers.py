"""The layers of the packages (README "Layout"), as import-linter contracts in setup.cfg: they hold,
and breaking the direction (even with an import inside a function) fails them."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_library_module_importing_agents_inside_a_function_breaks_the_contracts(tmp_path):
    for package in ("knockoff_env", "agents"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    with open(tmp_path / "knockoff_env" / "training" / "losses.py", "a") as f:
        f.write("\n\ndef summary_line(result):\n    from agents import format_summary\n\n"
                "    return format_summary(result)\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "The library never imports the agents, the command line or Ray BROKEN" in result.stdout
    assert "knockoff_env.training.losses -> agents" in result.stdout
