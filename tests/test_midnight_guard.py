"""The root conftest's guard: no test starts in the areas' last minutes."""
import datetime as dt
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('scenic_root_conftest',
    ROOT / 'conftest.py')
guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard)


def at(hour, minute, second=0):
    return dt.datetime(2026, 12, 5, hour, minute, second,
        tzinfo=guard.AREA_TZ)


def test_time_left_is_counted_in_the_areas_zone():
    assert guard.until_midnight(at(23, 59, 7)) == dt.timedelta(seconds=53)
    assert guard.until_midnight(at(0, 0)) == dt.timedelta(days=1)
    # 15:59:07 UTC is 23:59:07 in Shanghai (the CI run that failed).
    utc = dt.datetime(2026, 12, 5, 15, 59, 7, tzinfo=dt.timezone.utc)
    assert guard.until_midnight(utc.astimezone(guard.AREA_TZ)) \
        == dt.timedelta(seconds=53)


def test_waits_past_midnight_only_inside_the_margin(monkeypatch):
    slept = []
    monkeypatch.setattr(guard.time, 'sleep', slept.append)
    left = {'value': dt.timedelta(seconds=53)}
    monkeypatch.setattr(guard, 'until_midnight', lambda: left['value'])
    guard.wait_out_midnight(guard.TEST_MARGIN)
    assert slept == [54]
    left['value'] = guard.TEST_MARGIN + dt.timedelta(seconds=1)
    guard.wait_out_midnight(guard.TEST_MARGIN)
    assert slept == [54]
    guard.wait_out_midnight(guard.MODULE_MARGIN)
    assert slept == [54, 182]
