"""The attacks-vs-defences spec loads and covers every strategy and defence; the table and heat-map
code turns a real (tiny) sweep's results table into the right cells."""
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from agents.registry import BANDITS, IMAGE_AGENTS, PRESETS
from agents.sweep import load_spec, read_results, run_sweep
from benchmarks import attack_table, strategy_budgets
from knockoff_env.victim.defences import DEFENCES

GLYPHS = "examples.glyph_world:Knockoff-Glyphs-v0"
DFAL = {"activethief-dfal", "activethief-dfal-k-center"}  # too slow for the table: their own grid
DFAL_SPEC = attack_table.ROOT / "examples" / "sweeps" / "dfal_budgets.yaml"


def test_the_spec_runs_every_strategy_against_every_default_defence_on_both_worlds():
    for world in ("digits", "glyphs"):
        spec = load_spec(attack_table.spec_for(world))  # checks the env id, every option and value kind
        trials = spec.trials()
        assert spec.env == attack_table.WORLDS[world]
        assert set(spec.axes["agent"]) == {*BANDITS, "random", "adaptive-flat", *IMAGE_AGENTS, *PRESETS} - DFAL
        assert set(spec.axes["defence"]) == {None, *DEFENCES}  # each at its default: a bare name
        assert len(spec.axes["seed"]) >= 3
        assert len(trials) == len(spec.axes["agent"]) * len(spec.axes["defence"]) * len(spec.axes["seed"])
        assert all(t.env_options["detector"] == "prada" and t.env_options["on_detection"] == "flag" for t in trials)
        assert spec.run["eval_every"] and spec.run["retrain_epochs"] > 0
    budgets = load_spec(strategy_budgets.spec_for("glyphs", [200, 500, 1000], 5))
    assert budgets.axes["agent"] == attack_table.strategies() and budgets.axes["seed"] == [0, 1, 2, 3, 4]
    assert "defence" not in budgets.env_options and "detector" not in budgets.env_options


def test_the_dfal_rules_have_their_own_budget_grid_on_a_pool_subsample():
    grid = load_spec(strategy_budgets.spec_for("digits", [200, 500, 1000], 5, DFAL_SPEC))
    assert set(grid.axes["agent"]) == DFAL and grid.agent_options == {"pool_sample": 500}
    assert grid.run == load_spec(strategy_budgets.spec_for("digits", [200], 5)).run  # retrained as the others


def test_queries_to_reach_is_the_first_curve_point_at_the_target():
    assert attack_table.queries_to_reach([52, 100, 152, 200], [0.2, 0.86, 0.85, 0.95], 0.855) == 100
    assert attack_table.queries_to_reach([52, 100], [0.2, 0.5], 0.855) is None
    assert attack_table.queries_to_reach([], [], 0.5) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real 2 × 2 sweep on the glyph world: random and ucb, no defence and label-only answers."""
    raw = {"env": GLYPHS, "env_options": {"budget": 24, "detector": "prada", "on_detection": "flag"},
           "axes": {"seed": [0], "defence": [None, "label"], "agent": ["random", "ucb"]},
           "run": {"eval_every": 8, "retrain_epochs": 1, "checkpoint_every": 25}}
    out = tmp_path_factory.mktemp("tiny")
    run_sweep(raw, out, executor="inline", progress=False)
    return raw, read_results(out)  # the Parquet table, as the benchmark reads it


def test_cells_carry_each_trials_figures_into_its_defence_and_strategy(tiny):
    raw, results = tiny
    assert (results["status"] == "ok").all() and len(results) == 4
    assert {"victim_accuracy_defended", "defence_l1", "detected_at", "near_chance"} <= set(results.columns)
    table = attack_table.ordered(attack_table.cells(results), raw)
    assert list(zip(table["defence"], table["agent"])) == [("none", "random"), ("none", "ucb"),
                                                          ("label", "random"), ("label", "ucb")]
    for row in table.itertuples():
        trial = results[(results["agent"] == row.agent)
                        & (results["defence"].fillna("none") == row.defence)].iloc[0]
        assert row.knockoff == trial["knockoff_accuracy"] and row.agreement == trial["agreement"]
        assert row.victim_defended == trial["victim_accuracy_defended"]
        assert row.seeds == 1 and math.isnan(row.knockoff_std) and row.near_chance == int(trial["near_chance"])
        assert row.alarm == [None]  # 24 queries: PRADA has too few distances to test
        target = attack_table.TARGET * trial["victim_accuracy"]
        reached = [q for q, a in zip(trial["curve_queries"], trial["curve_accuracy"]) if a >= target]
        assert row.to_target == [reached[0] if reached else None]
        assert trial["curve_queries"][-1] == 24
    grid = attack_table.pivot(table)
    assert grid.loc["label", "ucb"] == table.set_index(["defence", "agent"]).loc[("label", "ucb"), "knockoff"]
    text = attack_table.pivot_markdown(table)
    assert f"| label | {grid.loc['label', 'random']:.3f} | {grid.loc['label', 'ucb']:.3f} |" in text


def test_seeds_average_and_alarms_read_back_from_parquet(tiny, tmp_path):
    _, results = tiny
    second = results.assign(seed=1, knockoff_accuracy=results["knockoff_accuracy"] + 0.1,
                            detected_at=[111, None, None, 131])
    both = pd.concat([results.assign(detected_at=None), second], ignore_index=True)
    both.to_parquet(tmp_path / "results.parquet", index=False)
    table = attack_table.cells(read_results(tmp_path)).set_index(["defence", "agent"])
    first = results.assign(defence=results["defence"].fillna("none")).set_index(["defence", "agent"])
    for key, row in table.iterrows():
        assert row["seeds"] == 2
        assert row["knockoff"] == pytest.approx(first.loc[key, "knockoff_accuracy"] + 0.05)
        assert row["knockoff_std"] == pytest.approx(0.1 / np.sqrt(2))
    assert table.loc[("none", "random"), "alarm"] == [None, 111]
    assert table.loc[("label", "ucb"), "alarm"] == [None, 131]
    assert table.loc[("none", "ucb"), "alarm"] == [None, None]


def test_the_heat_map_has_a_panel_per_world_and_the_budget_grid_compares_to_random(tiny, tmp_path):
    raw, results = tiny
    table = attack_table.ordered(attack_table.cells(results), raw)
    one = attack_table.heatmap({"glyphs": table}, tmp_path / "one.png", "test")
    two = attack_table.heatmap({"a": table, "b": table}, tmp_path / "two.png", "test")
    assert imread(two).shape[1] > 1.6 * imread(one).shape[1]
    undefended = results[results["defence"].isna()]
    stats = strategy_budgets.grid(undefended).set_index("agent")
    ucb, random = (undefended.set_index("agent").loc[a, "knockoff_accuracy"] for a in ("ucb", "random"))
    assert stats.loc["ucb", "vs_random"] == pytest.approx(ucb - random) and stats.loc["random", "vs_random"] == 0
    text = strategy_budgets.markdown(strategy_budgets.grid(undefended), ["random", "ucb"], [24])
    reached = "24" if ucb >= attack_table.TARGET * undefended["victim_accuracy"].iloc[0] else "–"
    assert f"| ucb | {ucb:.3f} ({ucb - random:+.3f}) [1] | {reached} |" in text
