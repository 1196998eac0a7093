"""What every test part shares: no test starts at the end of the areas' day.

The tests' areas are in Asia/Shanghai and their fixtures book on "today's"
slot, 00:00-23:59 there, as a box office does. Such a test that runs at
23:59 local time finds its slot ended ("This time slot has already ended."),
and one that runs across midnight finds its day changed under it: CI of
d9b0dec failed eleven box-office tests that way at 15:59 UTC. The clock
cannot be frozen for these tests (PostgreSQL's now(), the engine's and the
boxes' own processes read it too), so a test that would start in the last
minutes of the day waits for the next one instead: a few minutes lost on
the rare run that meets midnight, against a failure that says nothing about
the code.

A module waits with a wider margin than a test, because a module may build
its area once for all its tests (setUpClass, module fixtures).
"""
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

AREA_TZ = ZoneInfo('Asia/Shanghai')
TEST_MARGIN = dt.timedelta(minutes=3)
MODULE_MARGIN = dt.timedelta(minutes=10)


def until_midnight(now=None):
    "Time left before the next midnight in the areas' time zone."
    now = now or dt.datetime.now(AREA_TZ)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1),
        dt.time(), tzinfo=AREA_TZ)
    return midnight - now


def wait_out_midnight(margin):
    left = until_midnight()
    if left < margin:
        # Past midnight by a second, so "today" is the new day everywhere.
        time.sleep(left.total_seconds() + 1)


@pytest.fixture(autouse=True, scope='module')
def _module_not_at_midnight():
    wait_out_midnight(MODULE_MARGIN)


@pytest.fixture(autouse=True)
def _test_not_at_midnight():
    wait_out_midnight(TEST_MARGIN)
