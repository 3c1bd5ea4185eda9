"""Reading Prometheus text exposition in tests, with the parser prometheus_client ships."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named `name` (e.g. `x_total`, `x_bucket`) in an exposition, as (labels, value)."""
    return [
        (dict(found.labels), found.value)
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == name
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name{labels}`, or None."""
    return next((value for found, value in series(text, name) if found == labels), None)
