"""The attacker's own estimates during an attack: the online knockoff's held-out agreement
(each image scored before it is learnt) and the verdict when it stays near chance."""
from __future__ import annotations

from knockoff_env.training.estimate import chance_agreement, is_near_chance, near_chance_advice, warn_near_chance

ESTIMATE_WINDOW = 0.2  # without eval_every, the online estimate covers this last share of the budget
ONLINE_ADVICE = ("a larger knockoff_lr, or recipe='scratch' if the knockoff starts from random weights "
                 "(its loss reward is noise until then); retraining offline (retrain_epochs / --retrain-epochs)")


def online_agreement(core, queries: int, curve: list, log, bar) -> None:
    """Record the online knockoff's held-out agreement over the queries since the last call."""
    if not core.train_online:
        return
    value, scored = core.knockoff.heldout_agreement()
    if scored:
        curve.append((queries, value, scored))
        if log:
            log.scalar("agreement/online_heldout", value, queries)
        if bar is not None:
            bar.set_postfix(agreement=f"{value:.3f}")


def online_judgement(core, agreement_curve: list, retraining: bool) -> dict:
    """The online knockoff's latest held-out agreement, chance, and whether it is near chance;
    a warning when it is the final knockoff (no retraining), a line in the summary otherwise."""
    _, outputs = core.transfer_set.view()
    chance = chance_agreement(outputs.argmax(1), core.num_classes)
    if not agreement_curve:
        return {"online_heldout_agreement": None, "heldout_chance": chance, "online_near_chance": False,
                "near_chance": False, "advice": ""}
    _, value, scored = agreement_curve[-1]
    near = is_near_chance(value, chance, scored)
    advice = near_chance_advice("online", value, chance, ONLINE_ADVICE) if near else ""
    if near and not retraining:
        warn_near_chance("online", value, chance, ONLINE_ADVICE)
    return {"online_heldout_agreement": value, "heldout_chance": chance, "online_near_chance": near,
            "near_chance": near and not retraining, "advice": advice if not retraining else ""}
