"""Worlds: a victim, its test set, a query set and a hierarchy, registered as env ids."""
