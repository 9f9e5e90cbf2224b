"""The sweep's results table: one row per trial, written as ``results.csv`` and ``results.parquet``.

Built only from the ``result.json`` files the driver keeps under ``SWEEP_DIR/trials/`` (the
trials' return values), so it is complete even when the nodes wrote the trial directories
to storage the driver cannot see. Columns, in order:

* ``trial`` (its directory name under ``trials/``), ``status`` (``ok``, ``failed``,
  ``interrupted``, or ``pending`` for a trial that has not finished yet), ``error``,
  ``starts`` (how many times the trial was started: 1, or more if it was resumed);
* where it ran: ``node`` (the Ray node id; empty for trials run in-process) and ``host``;
* the options: ``env``, ``agent``, ``seed``, then every axis and every fixed env option by
  its own name (a list or mapping value as its JSON text, so that it can be grouped on),
  then the run options ``eval_every``, ``retrain_epochs``, ``checkpoint_every``;
* the summary: ``victim_accuracy``, ``knockoff_accuracy`` (retrained if the spec retrains),
  ``knockoff_accuracy_online``, ``times_victim``, ``agreement``, ``queries``,
  ``victim_queries``, ``seconds`` (all its starts together, killed ones included),
  ``attack_seconds`` (the attack phase of its last start), ``seen_classes``,
  ``unseen_classes``, ``seen_class_accuracy``, ``unseen_class_accuracy`` (supplement D.2),
  ``retrained``, ``resumed``; with a defence, ``victim_accuracy_defended`` (top-1 of the defended
  answers on the eval set) and ``defence_l1``; with a detector, ``detected_at`` (the query that
  raised its alarm; empty when none did); ``near_chance`` (the reported knockoff's held-out agreement
  is near a constant guess's: a fit that failed);
* the online knockoff's accuracy-vs-queries curve as two aligned lists, ``curve_queries``
  and ``curve_accuracy``: list columns in Parquet, JSON arrays in the CSV.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .spec import RUN_KEYS, Trial
from .trial import STARTS, read_result, trial_dir

SUMMARY = ("victim_accuracy", "knockoff_accuracy", "knockoff_accuracy_online", "times_victim", "agreement",
           "queries", "victim_queries", "seconds", "attack_seconds", "seen_classes", "unseen_classes",
           "seen_class_accuracy", "unseen_class_accuracy", "retrained", "resumed", "victim_accuracy_defended",
           "defence_l1", "detected_at", "near_chance")
CURVE = ("curve_queries", "curve_accuracy")


def write_results(out: str | Path, trials: list[Trial]) -> pd.DataFrame:
    """Collect the trials' results under ``out`` into a table and write it as CSV and Parquet."""
    out = Path(out)
    table = pd.DataFrame([_row(t, trial_dir(out, t)) for t in trials])
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
    result = read_result(directory)
    starts = directory / STARTS  # for a trial whose worker died before returning, where the driver sees it
    row = {"trial": trial.id, "status": result.get("status", "pending"), "error": result.get("error"),
           "starts": result.get("starts") or (len(starts.read_text().splitlines()) if starts.exists() else 0),
           "node": result.get("node"), "host": result.get("host"),
           "env": trial.env, "agent": trial.agent, "seed": trial.seed}
    options = {**trial.env_options, **trial.agent_options, **trial.axes}
    row.update({k: _cell(v) for k, v in options.items() if k not in row})
    row.update({k: trial.run.get(k) for k in RUN_KEYS if k not in row})
    row.update({k: result.get(k) for k in SUMMARY})
    row["seconds"] = result.get("total_seconds", result.get("seconds"))
    curve = result.get("accuracy_curve") or []
    row["curve_queries"] = [int(q) for q, _ in curve]
    row["curve_accuracy"] = [float(a) for _, a in curve]
    return row


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
