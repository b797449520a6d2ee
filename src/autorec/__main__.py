"""``python -m autorec`` runs the command-line interface (also under ``torchrun``)."""

from __future__ import annotations

import sys

from autorec.cli import main

if __name__ == "__main__":
    sys.exit(main())
