"""The sweep's results table: one row per trial, written as ``results.csv`` and ``results.parquet``.

Columns, in order:

* ``trial`` (its directory name under ``trials/``), ``status`` (``ok``, ``failed``, or
  ``pending`` for a trial that has not finished yet), ``error``, ``starts`` (how many times
  the trial was started: 1, or more if it was resumed);
* the options: ``env``, ``agent``, ``seed``, then every axis and every fixed env option by
  its own name (a list or mapping value as its JSON text, so that it can be grouped on);
* the summary: ``victim_accuracy``, ``knockoff_accuracy`` (retrained if the spec retrains),
  ``knockoff_accuracy_online``, ``times_victim``, ``agreement``, ``queries``,
  ``victim_queries``, ``seconds``, ``attack_seconds``, ``seen_classes``, ``unseen_classes``,
  ``seen_class_accuracy``, ``unseen_class_accuracy`` (supplement D.2), ``retrained``, ``resumed``;
* the online knockoff's accuracy-vs-queries curve as two aligned lists, ``curve_queries``
  and ``curve_accuracy``: list columns in Parquet, JSON arrays in the CSV.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .spec import Trial
from .trial import RESULT, STARTS, trial_dir

SUMMARY = ("victim_accuracy", "knockoff_accuracy", "knockoff_accuracy_online", "times_victim", "agreement",
           "queries", "victim_queries", "seconds", "attack_seconds", "seen_classes", "unseen_classes",
           "seen_class_accuracy", "unseen_class_accuracy", "retrained", "resumed")
CURVE = ("curve_queries", "curve_accuracy")


def write_results(out: str | Path, trials: list[Trial]) -> pd.DataFrame:
    """Collect the trials' results under ``out`` into a table and write it as CSV and Parquet."""
    out = Path(out)
    rows = [_row(t, trial_dir(out, t)) for t in trials]
    table = pd.DataFrame(rows)
    table.to_parquet(out / "results.parquet", index=False)
    csv = table.copy()
    for column in CURVE:
        csv[column] = csv[column].map(json.dumps)
    csv.to_csv(out / "results.csv", index=False)
    return table


def read_results(out: str | Path) -> pd.DataFrame:
    """The table a sweep wrote (Parquet if present, else the CSV with its curves decoded)."""
    out = Path(out)
    if (out / "results.parquet").exists():
        table = pd.read_parquet(out / "results.parquet")
        for column in CURVE:
            table[column] = table[column].map(list)
        return table
    if (out / "results.csv").exists():
        table = pd.read_csv(out / "results.csv")
        for column in CURVE:
            table[column] = table[column].map(json.loads)
        return table
    raise FileNotFoundError(f"no results.parquet or results.csv in {out}: run `knockoff sweep SPEC --out {out}`")


def _row(trial: Trial, directory: Path) -> dict:
    try:
        result = json.loads((directory / RESULT).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        result = {"status": "pending", "error": None}
    starts = directory / STARTS
    row = {"trial": trial.id, "status": result["status"], "error": result.get("error"),
           "starts": len(starts.read_text().splitlines()) if starts.exists() else 0,
           "env": trial.env, "agent": trial.agent, "seed": trial.seed}
    options = {**trial.env_options, **trial.agent_options, **trial.axes}
    row.update({k: _cell(v) for k, v in options.items() if k not in row})
    row.update({k: result.get(k) for k in SUMMARY})
    curve = result.get("accuracy_curve") or []
    row["curve_queries"] = [int(q) for q, _ in curve]
    row["curve_accuracy"] = [float(a) for _, a in curve]
    return row


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
