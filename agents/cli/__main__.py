"""``python -m agents.cli`` runs the ``knockoff`` command."""
import sys

from . import main

sys.exit(main())
