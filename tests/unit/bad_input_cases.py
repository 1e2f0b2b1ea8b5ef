"""The molecule bad-input suite's case files, for the unit tests that run the same
cases on fake hosts (one loader instead of one per test file)."""

from __future__ import annotations

import os

import yaml

CASES_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "extensions",
    "molecule",
    "bad-input",
    "cases",
)


def load(name: str) -> dict:
    """cases/<name>.yml: {variable: [case, ...]}."""
    with open(os.path.join(CASES_DIR, name + ".yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)
