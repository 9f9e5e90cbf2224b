"""Training the knockoff: the online step (phase a), recipes, the offline fit (phase b), the
attacker's held-out estimate, and evaluation against the victim; and query generators
(Jacobian-based augmentation)."""
