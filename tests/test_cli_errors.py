"""Issue 15, the CLI: every failure a user can cause is one line ``knockoff <command>: error: <what> —
<what to do>`` with exit code 2 and no traceback; ``--debug`` shows it; bugs say where to report."""
import argparse
import json
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import fuzz_cases
from agents.cli import main
from agents.cli.errors import DEBUG_ENV, run_command

ERROR_LINE = re.compile(r"^knockoff [\w-]+: error: .+ — .+$")


@pytest.fixture(scope="module")
def paths():
    return fuzz_cases.Paths()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=fuzz_cases.cli_argvs)
def test_cli_argument_vectors_succeed_or_end_in_one_clear_line(argv, paths):
    code, _, stderr = fuzz_cases.run_cli(argv, paths)
    verdict = fuzz_cases.cli_outcome(code, stderr)
    assert verdict in ("ok", "clear"), f"{argv}: {verdict}\n{stderr}"


def cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


ATTACK = ("attack", "--quiet", "--budget", "8")


def test_a_negative_evaluation_interval_is_a_clear_error(capsys):
    code, err = cli(capsys, *ATTACK, "--eval-every", "-3")
    assert code == 2 and ERROR_LINE.match(err) and "eval_every=-3" in err


def test_unknown_env_id_lists_the_knockoff_ids_and_the_closest(capsys):
    code, err = cli(capsys, *ATTACK, "--env", "Knockoff-Digitz-v0")
    assert code == 2 and ERROR_LINE.match(err) and "Traceback" not in err
    assert "unknown env id 'Knockoff-Digitz-v0' — did you mean Knockoff-Digits-v0?" in err
    assert "Knockoff-Caltech256-v0" in err and "Hopper" not in err
    code, err = cli(capsys, *ATTACK, "--env", "Hopper-v4")
    assert code == 2 and "registered ids are Knockoff-" in err


def test_unknown_env_option_lists_the_valid_ones_with_defaults(capsys):
    code, err = cli(capsys, *ATTACK, "--env-arg", "budgt=3")
    assert code == 2 and ERROR_LINE.match(err)
    assert "Knockoff-Digits-v0 has no option 'budgt' — did you mean budget?" in err
    assert "victim_path=None" in err and "queries_per_step=4" in err and "device='auto'" in err
    code, err = cli(capsys, *ATTACK, "--env", "Knockoff-Caltech256-v0", "--env-arg", "taud=0.5")
    assert code == 2 and "did you mean tau_d?" in err and "query_set='ilsvrc'" in err


def test_unusable_logdir_json_and_device_are_named(capsys, tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("x")
    for argv, message in [(("--logdir", str(existing)), f"--logdir {existing} is an existing file, not a folder — "),
                          (("--logdir", str(existing / "run")), f"cannot be created: {existing} is a file — "),
                          (("--json", str(tmp_path / "no" / "x.json")), "the folder"),
                          (("--json", str(tmp_path)), f"--json {tmp_path} is a folder — "),
                          (("--device", "bogus"), "device='bogus' is not a device torch knows — ")]:
        code, err = cli(capsys, *ATTACK, *argv)
        assert code == 2 and ERROR_LINE.match(err) and message in err, err
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code, err = cli(capsys, *ATTACK, "--device", f"cuda:{gpus}" if gpus else "cuda")
    assert code == 2 and ERROR_LINE.match(err) and ("no usable CUDA GPU" in err or f"has {gpus} CUDA GPU" in err)


def test_run_directory_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    code, err = cli(capsys, "evaluate", str(tmp_path))
    assert code == 2 and err.startswith("knockoff evaluate: error: ") and "config.json not found" in err
    code, err = cli(capsys, "attack", "--resume", str(tmp_path))
    assert code == 2 and "--resume needs a run directory" in err


def test_damaged_checkpoint_on_resume_never_advises_unsafe_loading(capsys, tmp_path):
    run = tmp_path / "run"
    assert main([*ATTACK, "--logdir", str(run), "--checkpoint-every", "1"]) == 0
    torch.save({"x": __import__("numpy").arange(3)}, run / "checkpoint.pt")  # safe loading refuses it
    code, err = cli(capsys, "attack", "--quiet", "--resume", str(run))
    assert code == 2 and ERROR_LINE.match(err.splitlines()[-1])
    assert "damaged or not a knockoff_env checkpoint" in err and "weights_only" not in err


def test_debug_flag_and_environment_variable_show_the_traceback(capsys, monkeypatch):
    code, err = cli(capsys, *ATTACK, "--env", "nope", "--debug")
    assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("knockoff attack: error: ")
    monkeypatch.setenv(DEBUG_ENV, "1")
    code, err = cli(capsys, *ATTACK, "--device", "bogus")
    assert code == 2 and "Traceback" in err


def test_an_internal_error_keeps_its_traceback_and_says_where_to_report(capsys):
    def broken(args):
        return {}["missing key"]  # a bug, not a user error

    code = run_command(argparse.Namespace(command="demo", func=broken))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "KeyError" in err
    assert "knockoff demo: internal error: KeyError" in err and "please report it" in err


def test_a_successful_attack_still_exits_0_and_writes_its_summary(capsys, tmp_path):
    code = main([*ATTACK, "--json", str(tmp_path / "s.json")])
    assert code == 0 and json.loads((tmp_path / "s.json").read_text())["interrupted"] is False
