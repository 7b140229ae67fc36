"""System updates: signed bundles of a new system partition and its boot image (issue 20)."""
