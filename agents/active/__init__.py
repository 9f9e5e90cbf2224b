"""Choosing which images to query: ActiveThief's selection rules over a pool (:mod:`.selection`)."""
