"""Label bandits beside the paper's gradient bandit: UCB1, discounted UCB, Gaussian Thompson
sampling and EXP3.S, each hierarchical (one bandit per node) or flat."""
from .exp3 import Exp3S
from .thompson import GaussianThompson
from .tree import TreeBandit
from .ucb import UCB, DiscountedUCB

__all__ = ["TreeBandit", "UCB", "DiscountedUCB", "GaussianThompson", "Exp3S"]
