"""The short summary printed after an attack: what was measured, what was not and why, and a
fit near chance said loudly."""
from __future__ import annotations

LABELS = {"victim_accuracy": "victim accuracy", "knockoff_accuracy": "knockoff accuracy", "times_victim": "×victim",
          "agreement": "agreement", "victim_accuracy_defended": "victim accuracy under the defence",
          "defence_l1": "the defence's L1"}


def format_summary(result: dict) -> str:
    """The lines of :func:`~agents.run_attack`'s ``result`` a person reads first."""
    unmeasured = result.get("not_measured") or {}

    def number(key: str) -> str:
        value = result.get(key)
        if value is not None:
            return f"{value:.4f}"
        return "not measured (see below)" if key in unmeasured else "n/a (no eval set)"
    lines = [f"victim accuracy   {number('victim_accuracy')}"]
    if result.get("knockoff_accuracy") is not None:
        ratio = "" if result.get("times_victim") is None else f"{result['times_victim']:.2f}× victim, "
        online = result.get("knockoff_accuracy_online")  # None: no online knockoff was trained
        lines.append(f"knockoff accuracy {result['knockoff_accuracy']:.4f}  ({ratio}"
                     f"{'retrained' if result.get('retrained') else 'online'}"
                     + (("; no online knockoff" if online is None else f"; online {online:.4f}")
                        if result.get("retrained") else "")
                     + "; on the world's labelled eval set)")
        lines.append(f"agreement         {number('agreement')}"
                     + ("  (with the victim, on the eval set)" if result.get("agreement") is not None else ""))
    lines += _estimate_lines(result)
    if result.get("defence"):
        lines.append(f"under defence     victim accuracy {number('victim_accuracy_defended')}, mean L1 "
                     f"{number('defence_l1')}  ({result['defence']})")
    if result.get("detector"):
        alarm = result.get("detected_at")
        lines.append(f"detector          {result['detector']}: "
                     + ("no alarm" if alarm is None else f"alarm at query {alarm}"))
    lines += [f"queries           {result['queries']}", f"seconds           {result['seconds']:.1f}"]
    if "ledger" in result:
        lines.append(format_ledger(result["ledger"]))
    if unmeasured:
        reasons = {}
        for key, reason in unmeasured.items():
            reasons.setdefault(reason, []).append(LABELS.get(key, key))
        lines += [f"not measured      {', '.join(names)}: {reason}" for reason, names in reasons.items()]
    if result.get("near_chance"):
        lines.append(f"WARNING: NEAR CHANCE: {result['advice']}")
    elif result.get("retrained") and result.get("online_near_chance"):
        lines.append(f"note: the online knockoff stayed near chance (held-out agreement "
                     f"{result['online_heldout_agreement']:.2f}, chance {result['heldout_chance']:.2f}), so its "
                     f"loss reward carried little signal. {result.get('online_advice', '')}".rstrip())
    return "\n".join(lines)


def _estimate_lines(result: dict) -> list[str]:
    """The attacker's own estimate: the retrained knockoff's held-out agreement, else the online one's."""
    if result.get("retrained"):
        return [f"held-out agreement {result['heldout_agreement']:.4f}  (attacker's estimate: "
                f"{result['heldout_size']} held-out transfer queries; chance {result['heldout_chance']:.2f}; "
                f"recipe {result['recipe']}, best epoch {result['best_epoch']}/{result['retrain_epochs']})"]
    if result.get("online_heldout_agreement") is not None:
        return [f"held-out agreement {result['online_heldout_agreement']:.4f}  (attacker's estimate for the online "
                f"knockoff, each query scored before it was learnt; chance {result['heldout_chance']:.2f})"]
    return []


def format_ledger(ledger: dict) -> str:
    """A remote victim's ledger as summary lines."""
    cost = "" if ledger.get("cost") is None else f"; cost {ledger['cost']:.4g} (+{ledger['eval_cost']:.4g} evaluation)"
    return (f"paid              {ledger['queries']} queries in {ledger['requests']} requests ({ledger['retries']} "
            f"retries, {ledger['repeats']} answered again for free), {ledger['seconds_waiting']:.1f} s waiting{cost}\n"
            f"evaluation        {ledger['eval_queries']} queries through the endpoint")
