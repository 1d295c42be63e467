"""Checks every storage adapter makes on workflow records before writing them (one rule, two backends)."""

from __future__ import annotations

import math
from typing import get_args

from server.storage.records import ProjectPhase

PHASES = frozenset(get_args(ProjectPhase))


def check_version(version: int, expected_version: int) -> None:
    """An update carries the version it makes: one more than the one it replaces."""
    if version != expected_version + 1:
        raise ValueError(f"the record's version is {version}, not expected_version + 1 = {expected_version + 1}")


def check_float(name: str, value: float | None) -> float | None:
    """Coordinates and amounts are finite numbers, stored as floats (an int given is made one)."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def check_phase_dates(name: str, dates: dict[str, int]) -> dict[str, int]:
    """`Project.planned` / `actual` are keyed by phase names only (they become field names in MongoDB)."""
    unknown = set(dates) - PHASES
    if unknown:
        raise ValueError(f"{name} has keys that are not project phases: {sorted(unknown)}")
    return dict(dates)
