"""Keep torch usable in processes forked after it has run (``gym.make_vec(..., "async")``).

GNU OpenMP's thread pool does not survive ``fork``: a child that starts a parallel region
with the parent's thread count waits forever for threads it does not have. Gymnasium's
async vector env forks its workers after building one env in the parent, so without this
they hang on their first forward pass. A forked child gets one intra-op thread, which is
also what N worker processes on N cores want (PyTorch's DataLoader workers do the same).
"""
import os

import torch


def _one_thread_in_child() -> None:
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_in_child)
