"""The share of a year a service scaled to zero on a schedule runs, from its two cron expressions."""

import pytest

from tools.cost.cron import running_share

WEEKDAYS_2027 = 261  # 2027 has 52 weeks and a Friday


@pytest.mark.parametrize(
    ("down", "up", "share"),
    [
        # Office hours 07:00-19:00 on weekdays: 12 hours on each of the year's weekdays.
        ("cron(0 19 ? * MON-FRI *)", "cron(0 7 ? * MON-FRI *)", WEEKDAYS_2027 * 12 / (365 * 24)),
        # The same with AWS's day numbers (1 = Sunday).
        ("cron(0 19 ? * 2-6 *)", "cron(0 7 ? * 2-6 *)", WEEKDAYS_2027 * 12 / (365 * 24)),
        # Every night, whichever comes first in the day.
        ("cron(0 20 * * ? *)", "cron(0 8 * * ? *)", 0.5),
        ("cron(0 7 * * ? *)", "cron(0 19 * * ? *)", 0.5),
        ("cron(30 22 * * ? *)", "cron(30 6 * * ? *)", 16 / 24),
        # Only the weekends off: Friday 19:00 to Monday 07:00.
        ("cron(0 19 ? * FRI *)", "cron(0 7 ? * MON *)", 1 - 52 * 60 / (365 * 24)),
    ],
)
def test_the_running_share_of_common_schedules(down: str, up: str, share: float) -> None:
    # A calendar year is not whole weeks: within half a percent (a few hours a month).
    assert running_share(down, up) == pytest.approx(share, abs=5e-3)


@pytest.mark.parametrize(
    ("down", "up"),
    [
        ("cron(0 19 L * ? *)", "cron(0 7 1 * ? *)"),
        ("cron(0 19 ? * 6#3 *)", "cron(0 7 ? * MON *)"),
        ("cron(0 19 ? * MON-FRI 2027)", "cron(0 7 ? * MON-FRI *)"),
        ("cron(0 25 ? * MON-FRI *)", "cron(0 7 ? * MON-FRI *)"),
    ],
)
def test_what_it_cannot_count_gives_no_figure(down: str, up: str) -> None:
    assert running_share(down, up) is None
