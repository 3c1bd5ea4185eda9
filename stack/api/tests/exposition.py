"""Reading Prometheus text exposition in tests."""

from __future__ import annotations

import re


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of `name` in an exposition, as (labels, value)."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
            found.append((labels, float(match[3])))
    return found


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name{labels}`, or None."""
    return next((value for found, value in series(text, name) if found == labels), None)
