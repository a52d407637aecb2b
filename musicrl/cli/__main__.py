"""``python -m musicrl.cli`` runs the ``musicrl`` command."""

import sys

from musicrl.cli import main

sys.exit(main())
