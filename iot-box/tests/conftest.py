"""Fixtures of the box core's tests (tests/drivers/ has its own)."""
import sys
from pathlib import Path

import pytest

BOX = Path(__file__).resolve().parent.parent
if str(BOX) not in sys.path:
    # works before `pip install -e iot-box` too
    sys.path.insert(0, str(BOX))


@pytest.fixture
def fake_erp():
    from box_fakes import FakeErp
    erp = FakeErp()
    yield erp
    erp.close()


@pytest.fixture
def clock():
    from box_fakes import Clock
    return Clock()


@pytest.fixture
def store(tmp_path):
    from scenic_iotbox.store import Store
    store = Store(tmp_path / 'box.sqlite')
    yield store
    store.close()


@pytest.fixture
def synced_store(store, clock):
    """A store enrolled and holding the fake ERP's demo data."""
    from box_fakes import AREA, GENERATIONS, full_answer
    store.save_credentials(42, 'secret', AREA, GENERATIONS, clock())
    store.apply_sync(full_answer(), clock())
    return store


@pytest.fixture
def matcher():
    from box_fakes import FakeMatcher
    return FakeMatcher()


@pytest.fixture
def validator(synced_store, tmp_path, clock, matcher):
    from scenic_iotbox.validator import Validator
    return Validator(synced_store, tmp_path, biometrics={'face': matcher},
        clock=clock)
