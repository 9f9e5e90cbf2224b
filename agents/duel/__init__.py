"""The duel's players and loop: defenders (fixed, detector-triggered, learning), one episode of an
attacker against a defender, a defender's training over episodes, and its figure. The env itself
is :mod:`knockoff_env.duel` (needs the ``duel`` extra, PettingZoo)."""
from .defenders import BanditDefender, Defender, FixedDefender, TriggeredDefender
from .figures import plot_training
from .play import ATTACKERS, evaluate_defender, make_attacker, play_episode, train_defender

__all__ = ["Defender", "FixedDefender", "TriggeredDefender", "BanditDefender", "play_episode", "train_defender",
           "evaluate_defender", "make_attacker", "ATTACKERS", "plot_training"]
