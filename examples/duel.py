"""The attacker against a defender that learns: the duel on the embedded digits world.

    python examples/duel.py            # about 2-4 minutes on a laptop CPU
    python examples/duel.py --episodes 2 --budget 80 --epochs 1 --out /tmp/duel   # a quick look

A learning defender (a gradient bandit over the menu, one per confidence bin of a client)
trains against the paper's hierarchical bandit attacker; then it, a fixed defence and the
PRADA-triggered defender each play one held-out episode, after which the attacker's knockoff is
retrained offline. The figure (runs/duel/duel.png) shows, over the training episodes, the
attacker's knockoff accuracy and the defender's cost on benign traffic. See docs/duel.md.
"""
import argparse

from agents.duel import (
    BanditDefender,
    FixedDefender,
    TriggeredDefender,
    evaluate_defender,
    plot_training,
    train_defender,
)
from knockoff_env.duel import parallel_env

parser = argparse.ArgumentParser(description="the duel on the embedded digits world")
parser.add_argument("--episodes", type=int, default=12, help="the learning defender's training episodes")
parser.add_argument("--budget", type=int, default=400, help="the attacker's queries per episode")
parser.add_argument("--epochs", type=int, default=30, help="offline retraining epochs after a held-out episode")
parser.add_argument("--out", default="runs/duel", help="where the figure goes")
args = parser.parse_args()
EPISODES, BUDGET, SEED = args.episodes, args.budget, 0

duel = parallel_env(budget=BUDGET)                 # PettingZoo ParallelEnv: agents "attacker", "defender"
print("menu:", duel.menu.names)

learner = BanditDefender(duel, seed=SEED)
history = train_defender(duel, learner, EPISODES, seed=SEED, on_episode=lambda e, r: print(
    f"episode {e}: attacker's online knockoff {r['knockoff_accuracy_online']:.3f}, benign cost {r['benign_cost']:.3f}"))
print("learned response table:", dict(zip(learner.context_names(), (duel.menu.names[a] for a in
                                                                     learner.policy().argmax(1)))))

defenders = {"learning": learner, "fixed mad_argmax:eps=1.0": FixedDefender(duel, "mad_argmax"),
             "triggered PRADA → refuse": TriggeredDefender(duel), "no defence": FixedDefender(duel, "none")}
held_out = {name: evaluate_defender(duel, d, seed=SEED, retrain_epochs=args.epochs) for name, d in defenders.items()}
for name, r in held_out.items():
    print(f"{name:28s} knockoff (retrained) {r['knockoff_accuracy']:.3f}   benign cost {r['benign_cost']:.3f}")

figure = {"learning": [history], **{name: [[r]] for name, r in held_out.items() if name != "learning"}}
print("figure:", plot_training(figure, f"{args.out}/duel.png", title=f"digits duel, budget {BUDGET}"))
