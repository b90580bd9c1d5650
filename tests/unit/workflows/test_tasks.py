"""The daily DAG's business-date macro: the Shanghai day of the data interval, or a checked conf date."""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
import pytest

from cdyb_jxc.workflows.tasks import business_date


def _run(conf=None):
    return SimpleNamespace(conf=conf)


def test_business_date_is_the_data_interval_start_in_shanghai_not_utc():
    # the 02:00 Asia/Shanghai run of 2026-11-21 covers 2026-11-20 00:00 +08:00 = 2026-11-19 16:00 UTC
    start = pendulum.datetime(2026, 11, 19, 16, 0, tz="UTC")
    assert business_date(_run(), start) == "2026-11-20"


@pytest.mark.parametrize("conf", [None, {}, {"business_date": None}, {"business_date": ""}])
def test_empty_conf_falls_back_to_the_interval(conf):
    assert business_date(_run(conf), pendulum.datetime(2026, 11, 19, 16, tz="UTC")) == "2026-11-20"


def test_conf_date_wins_and_is_normalised():
    assert business_date(_run({"business_date": " 2026-11-03 "}), None) == "2026-11-03"


@pytest.mark.parametrize(
    "given", ["2026-11-31", "20261103", "2026-11-03'; DROP TABLE his_outbound; --", "yesterday", 20261103]
)
def test_conf_date_that_is_not_a_date_is_refused_before_it_reaches_the_sql(given):
    with pytest.raises(ValueError, match="business_date must be") as info:
        business_date(_run({"business_date": given}), None)
    assert str(info.value) == f"business_date must be a date written YYYY-MM-DD, not {given!r}"


def test_run_without_interval_or_date_says_what_to_pass():
    with pytest.raises(ValueError, match="no data interval") as info:
        business_date(_run(), None)
    assert str(info.value) == (
        "this run has no data interval (triggered without a logical date): "
        'trigger it with conf {"business_date": "YYYY-MM-DD"}'
    )
