"""The MDP: the env, its rewards and transfer set, the checks that its parts fit, and several
attacks batched against one victim."""
