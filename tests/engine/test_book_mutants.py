"""Tests that kill the mutants of app/engine/book.py the other tests let survive."""

from __future__ import annotations
