"""Choosing which images to query (ActiveThief: :mod:`.selection`, :mod:`.activethief`) or making
them (Jacobian-based augmentation: :mod:`.jacobian`)."""
