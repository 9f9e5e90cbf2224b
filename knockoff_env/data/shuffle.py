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

Where the uniforms come from is the pools' *scheme*, recorded in a durable run's configuration
so that a resumed run draws as it began (:data:`SCHEMES`):

* ``"keyed"`` (current): a Philox generator keyed by the seed, its counter at the chunk; one
  generator is re-keyed per chunk, a third of the cost of making a new one.
* ``"lazy"``: a new generator seeded with ``(seed, chunk)`` (runs journaled before ``keyed``).
* ``"whole"``: no seed; a pool is shuffled whole with the query set's RNG at its first draw
  (runs journaled before lazy pools; :class:`~knockoff_env.data.query_set.QuerySet` does it).
"""
from __future__ import annotations

import numpy as np

CHUNK = 64  # positions settled per generator call
WHOLE = 4096  # pools up to this size are shuffled whole at once (a few µs), not a chunk at a time
SCHEMES = ("keyed", "lazy", "whole")


class Uniforms:
    """The generator of a pool's chunk under a scheme: ``uniforms(seed, chunk)`` (chunk None: the
    whole pool). One per query set: the keyed scheme re-keys one Philox generator."""

    def __init__(self, scheme: str = "keyed"):
        if scheme not in SCHEMES:
            raise ValueError(f"pools={scheme!r} is not a pool scheme; this version knows {SCHEMES} "
                             "(a run journaled by a newer version resumes with that version)")
        self.scheme = scheme
        self._bits = np.random.Philox(0)
        self._generator = np.random.Generator(self._bits)

    def __call__(self, seed: int, chunk: int | None) -> np.random.Generator:
        if self.scheme == "lazy":
            return np.random.default_rng(seed if chunk is None else (seed, chunk))
        self._bits.state = {"bit_generator": "Philox", "buffer": np.zeros(4, np.uint64), "buffer_pos": 4,
                            "has_uint32": 0, "uinteger": 0,
                            "state": {"counter": np.array([0, chunk or 0, 0, 0], np.uint64),
                                      "key": np.array([seed, 0], np.uint64)}}
        return self._generator


def settle(pool: np.ndarray, done: int, upto: int, seed: int, uniforms: Uniforms) -> int:
    """Settle ``pool`` (a view of one label's images, its cursor at 0 or later) from position
    ``done`` to ``upto``, in place; returns the new ``done``. Earlier positions are final."""
    n = len(pool)
    upto = min(upto, n)
    if n <= WHOLE and done < upto:
        uniforms(seed, None).shuffle(pool[done:])
        return n
    while done < upto:
        chunk = done // CHUNK
        u = uniforms(seed, chunk).random(CHUNK)
        stop = min((chunk + 1) * CHUNK, n)
        positions = np.arange(done, stop)
        offsets = (u[done - chunk * CHUNK:stop - chunk * CHUNK] * (n - positions)).astype(np.int64)
        swap_in_turn(pool, positions, positions + np.minimum(offsets, n - 1 - positions))
        done = stop
    return done


def swap_in_turn(pool: np.ndarray, positions: np.ndarray, targets: np.ndarray) -> None:
    """Swap ``pool[i]`` with ``pool[t]`` for each pair in turn (``t ≥ i``, positions ascending).
    When the pairs are disjoint (targets distinct and past the last position: most chunks of a
    large pool) the order does not matter and all are swapped at once."""
    moved = targets != positions
    a, b = positions[moved], targets[moved]
    if b.size == 0 or (b.min() > positions[-1] and np.unique(b).size == b.size):
        pool[a], pool[b] = pool[b], pool[a]
        return
    for i, j in zip(positions.tolist(), targets.tolist()):
        pool[i], pool[j] = pool[j], pool[i]
