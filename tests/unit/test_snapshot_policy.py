"""The snapshots.* keys: schedules, expiry durations and name patterns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dateutil.relativedelta import relativedelta

from stapes.api.errors import BadRequest
from stapes.config import snapshots as policy

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_next_name_counts_past_the_highest_index() -> None:
    assert policy.next_name("snap%d", [], WHEN) == "snap0"
    assert policy.next_name("snap%d", ["snap0", "snap3", "other"], WHEN) == "snap4"
    assert policy.next_name("pre-%d-post", ["pre-9-post"], WHEN) == "pre-10-post"


def test_fixed_names_get_a_counter_when_taken() -> None:
    assert policy.next_name("daily", [], WHEN) == "daily"
    assert policy.next_name("daily", ["daily"], WHEN) == "daily-0"
    assert policy.next_name("daily", ["daily", "daily-0"], WHEN) == "daily-1"
    with pytest.raises(BadRequest, match="once"):
        policy.next_name("%d-%d", [], WHEN)


def test_patterns_take_the_creation_date_in_go_layout() -> None:
    pattern = "{{ creation_date|date:'2006-01-02_15-04-05' }}"
    assert policy.next_name(pattern, [], WHEN) == "2026-03-04_05-06-07"
    assert policy.render_pattern('s-{{creation_date|date:"Jan 06"}}', WHEN) == "s-Mar 26"


def test_expiry_units() -> None:
    assert policy.expiry("1M 2H 3d") == relativedelta(minutes=1, hours=2, days=3)
    assert policy.expiry("1w 1m 1y") == relativedelta(weeks=1, months=1, years=1)
    for bad in ("", "2", "2x", "d3"):
        with pytest.raises(ValueError, match="expiry"):
            policy.expiry(bad)


def test_schedules_and_when_they_fire() -> None:
    assert policy.schedules("@hourly, @midnight") == ["@hourly", "@daily"]
    assert policy.due("@hourly", datetime(2026, 1, 1, 3, 0, 30))
    assert not policy.due("@hourly", datetime(2026, 1, 1, 3, 1))
    assert policy.due("*/15 3 * * *", datetime(2026, 1, 1, 3, 45))
    assert not policy.due("*/15 3 * * *", datetime(2026, 1, 1, 4, 45))
    assert policy.schedules("") == []
    for bad in ("@often", "* * *", "61 * * * *", "daily"):
        with pytest.raises(ValueError, match=r"schedule|cron"):
            policy.schedules(bad)
