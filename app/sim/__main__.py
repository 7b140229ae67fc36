"""``python -m app.sim``: run the simulator without the appliance CLI."""

from __future__ import annotations

import sys

from app.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
