"""Where the tests find the repository and the shared reference data.

``APPLIANCE_REFERENCE_DIR`` overrides the reference directory: mutation testing runs the tests from
a copy of the repository (``mutants/``) that has no ``../shared`` beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("APPLIANCE_REFERENCE_DIR") or REPO / ".." / "shared" / "reference")
