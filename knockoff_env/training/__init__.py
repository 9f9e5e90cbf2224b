"""Training the models an attacker builds: the online knockoff, offline fits, and query generators."""
