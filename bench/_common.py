"""What every scenario module of the benchmark shares: a table row and percentiles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    scenario: str
    figure: str
    value: float
    unit: str
    limit: str = ""
    limit_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def pct(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
