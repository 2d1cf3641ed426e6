"""The share rule: what the directives' "regular use" percentage is a share of.

A person counts (is *rated*) when they are not a unit's shared mailbox and their mailbox
was collected on at least one night of the month: their usage class is one of
``RATED_CLASSES``. The share is the regular users among them; with nobody rated it is
unknown (None), never 0 %.

>>> regular_share(["regular", "inactive", "regular", "occasional"])
0.5
>>> regular_share([]) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable

# usage classes of a person whose mailbox was collected that month ("no_mailbox",
# "no_data" and the like are outside the share)
RATED_CLASSES = frozenset({"regular", "occasional", "inactive"})


def is_rated(is_unit_mailbox: bool, usage_class: str | None) -> bool:
    """Whether a person-month row counts in the share."""
    return not is_unit_mailbox and usage_class in RATED_CLASSES


def regular_share(classes: Iterable[str]) -> float | None:
    """The share of "regular" among the usage classes of the rated people given."""
    rated = [c for c in classes if c in RATED_CLASSES]
    if not rated:
        return None
    return sum(c == "regular" for c in rated) / len(rated)
