"""How much of the time a service scaled to zero on a schedule runs: its two cron expressions over a year.

The expressions are the six-field ``cron(minutes hours day-of-month month day-of-week year)``
Application Auto Scaling reads, in UTC. Lists, ranges, steps and day and month names are
understood; what needs a calendar rule (``L``, ``W``, ``#``) or names a year is not, and
gives no figure rather than a wrong one.
"""

from __future__ import annotations

import datetime
from itertools import pairwise

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # 1-7, as AWS numbers them
# A common year of whole days: the share of a year is what a month averages.
_YEAR = 2027


class Unsupported(ValueError):
    """An expression this estimate cannot count."""


def _values(field: str, low: int, high: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    if any(mark in field for mark in "LW#"):
        raise Unsupported(field)
    for number, name in enumerate(names, start=low):
        field = field.upper().replace(name, str(number))
    result: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span in ("*", "?"):
            first, last = low, high
        else:
            start, _, end = span.partition("-")
            first = int(start)
            last = int(end) if end else (high if step else first)
        if not (low <= first <= high and low <= last <= high):
            raise Unsupported(item)
        result.update(range(first, last + 1, int(step) if step else 1))
    return frozenset(result)


def _moments(expression: str) -> list[int]:
    """Minutes of the year at which ``expression`` fires."""
    fields = expression.removeprefix("cron(").removesuffix(")").split(" ")
    if len(fields) != 6 or fields[5] not in ("*", "?"):
        raise Unsupported(expression)
    minutes, hours = _values(fields[0], 0, 59), _values(fields[1], 0, 23)
    days, months = _values(fields[2], 1, 31), _values(fields[3], 1, 12, _MONTHS)
    weekdays = _values(fields[4], 1, 7, _DAYS)
    moments = []
    first = datetime.date(_YEAR, 1, 1)
    for offset in range(365):
        day = first + datetime.timedelta(days=offset)
        if day.month in months and day.day in days and day.isoweekday() % 7 + 1 in weekdays:
            moments += [offset * 1440 + hour * 60 + minute for hour in sorted(hours) for minute in sorted(minutes)]
    return moments


def running_share(down: str, up: str) -> float | None:
    """The share of a year the service runs, scaled to zero at ``down`` and back at ``up``; None if not countable."""
    try:
        events = sorted([(moment, False) for moment in _moments(down)] + [(moment, True) for moment in _moments(up)])
    except (Unsupported, ValueError):
        return None
    if not events:
        return 1.0
    year = 365 * 1440
    # The year wraps around: the last event's state lasts until the first event of the next year.
    wrapped = [*events, (events[0][0] + year, events[0][1])]
    running = sum(end - start for (start, state), (end, _) in pairwise(wrapped) if state)
    return running / year
