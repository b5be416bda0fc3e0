from datetime import UTC, datetime

import pytest

from civic_pipelines.months import BlockPlanError, month_bounds, month_range, plan_months

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_month_bounds_are_half_open_and_cover_the_whole_month():
    assert month_bounds("2024-02") == ("2024-02-01T00:00:00.000", "2024-03-01T00:00:00.000")
    assert month_bounds("2024-12") == ("2024-12-01T00:00:00.000", "2025-01-01T00:00:00.000")


def test_range_is_inclusive():
    assert month_range("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]


def test_scheduled_run_on_first_of_november_lands_october_only():
    months = plan_months(None, None, utc(2026, 10, 1), utc(2026, 11, 1), first_month="2008-01", max_blocks=12, now=NOW)
    assert months == ["2026-10"]


def test_params_win_over_the_data_interval():
    months = plan_months(
        "2024-01", "2024-03", utc(2026, 10, 1), utc(2026, 11, 1), first_month="2008-01", max_blocks=12, now=NOW
    )
    assert months == ["2024-01", "2024-02", "2024-03"]


@pytest.mark.parametrize(
    "start,end,message",
    [
        ("2024-03", "2024-01", "end_month 2024-01 is before start_month 2024-03"),
        ("2026-10", "2026-11", "month 2026-11 is not complete yet"),
        ("2026-12", "2027-01", "not complete yet"),
        ("2024-1", "2024-03", "not in YYYY-MM form"),
        ("2000-01", "2000-02", "before the source's first month 2008-01"),
        ("2010-01", "2012-12", "36 months requested (2010-01..2012-12); the limit is 12 blocks per run"),
        ("2024-01", None, "give both start_month and end_month"),
    ],
)
def test_bad_ranges_fail_with_a_clear_message(start, end, message):
    with pytest.raises(BlockPlanError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        plan_months(start, end, None, None, first_month="2008-01", max_blocks=12, now=NOW)


def test_a_cron_later_on_the_first_still_plans_the_month_that_ended():
    """Publishers that post during the 1st (Street Manager's archives) run at, say, 06:00: the
    interval [Oct 1 06:00, Nov 1 06:00) covers October, the month that ended inside it."""

    def scheduled(interval_start, interval_end):
        return plan_months(
            None, None, interval_start, interval_end, first_month="2020-01", max_blocks=120, now=utc(2026, 11, 23)
        )

    assert scheduled(utc(2026, 10, 1, 6), utc(2026, 11, 1, 6)) == ["2026-10"]
    yearly = scheduled(utc(2025, 1, 1), utc(2026, 1, 1))
    assert yearly == [f"2025-{m:02d}" for m in range(1, 13)]
    with pytest.raises(BlockPlanError, match="no month ends"):
        scheduled(utc(2026, 10, 2), utc(2026, 10, 9))
