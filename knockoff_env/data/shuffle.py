"""A pool's random order, settled only as far as it is drawn.

Shuffling a whole label pool when it is first drawn from costs time in proportion to the pool
(about 10 ms per 500,000 images): an attack of 1,000 queries over ILSVRC would shuffle 1.28 M
indices to use 1,000 of them. Instead a pool gets its own seed when it is first drawn from,
and a Fisher–Yates shuffle run from the front settles its order a chunk of :data:`CHUNK`
positions at a time, only as far as the draws (or a look-ahead) reach. Position ``i`` of the
pool swaps with ``i + ⌊u·(n − i)⌋``, ``u`` the ``i``-th uniform of the pool's seed, so the
order is fixed the moment the seed is, whatever the chunks settled so far: which images a
draw takes never depends on how far the look-ahead looked. A pool of at most :data:`WHOLE`
images is cheaper to shuffle whole (with its seed) at its first draw, and is.
"""
from __future__ import annotations

import numpy as np

CHUNK = 64  # positions settled per generator call
WHOLE = 4096  # pools up to this size are shuffled whole at once (a few µs), not a chunk at a time


def settle(pool: np.ndarray, done: int, upto: int, seed: int) -> int:
    """Settle ``pool`` (a view of one label's images, its cursor at 0 or later) from position
    ``done`` to ``upto``, in place; returns the new ``done``. Earlier positions are final."""
    n = len(pool)
    upto = min(upto, n)
    if n <= WHOLE and done < upto:
        np.random.default_rng(seed).shuffle(pool[done:])
        return n
    while done < upto:
        chunk = done // CHUNK
        u = np.random.default_rng((seed, chunk)).random(CHUNK)
        stop = min((chunk + 1) * CHUNK, n)
        positions = np.arange(done, stop)
        offsets = (u[done - chunk * CHUNK:stop - chunk * CHUNK] * (n - positions)).astype(np.int64)
        targets = (positions + np.minimum(offsets, n - 1 - positions)).tolist()
        for i, j in zip(positions.tolist(), targets):
            pool[i], pool[j] = pool[j], pool[i]
        done = stop
    return done
