"""The adversary's data: loaders for the published on-disk layouts of the paper's datasets,
the query set with its pools, and the image pipeline (fetching, decoding, packed sets, look-ahead).

Every loader takes ``data_root`` (else ``$KNOCKOFF_DATA``) and returns a map-style
Dataset of ``(image tensor, label)`` with ``.targets`` and ``.classes``; see
``docs/worlds.md`` for each layout. :func:`.victims.victim_data` is the one entry point for a
victim's train/test split by dataset name. Importing this package imports no loader (and no
torchvision dataset code): each is imported when it is used.
"""
