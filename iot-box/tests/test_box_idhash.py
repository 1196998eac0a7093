"""The box's keyed hash of ID numbers equals PIIVault.lookup_hash."""
import pytest
from hypothesis import given, strategies as st

from scenic_common import pii
from scenic_common.idnumber import (
    HK_MACAU_PERMIT, PASSPORT, RESIDENT_ID, make_resident_id)
from scenic_iotbox.idhash import candidate_hashes, lookup_hash

MASTER = 'a-master-key-for-the-tests-0123456789abcdef'
VAULT = pii.PIIVault(MASTER)
# The look-up key PIIVault derives (what the ERP sends at enrolment).
KEY = pii.PIIVault(MASTER).lookup_key()
NUMBER = '11010519491231002X'


def test_same_as_the_vault():
    assert KEY == VAULT._lookup_key
    for id_type, number in [(RESIDENT_ID, NUMBER),
            (RESIDENT_ID, '11010519491231002x'),
            (PASSPORT, 'e12345678'), (HK_MACAU_PERMIT, 'H12345678')]:
        assert lookup_hash(KEY, id_type, number) == VAULT.lookup_hash(
            id_type, number)


def test_base64_master_key():
    master = 'base64:' + __import__('base64').b64encode(b'k' * 32).decode()
    vault = pii.PIIVault(master)
    key = pii.PIIVault(master).lookup_key()
    assert lookup_hash(key, RESIDENT_ID, NUMBER) == vault.lookup_hash(
        RESIDENT_ID, NUMBER)


@given(st.dates(min_value=__import__('datetime').date(1930, 1, 1),
    max_value=__import__('datetime').date(2020, 1, 1)),
    st.integers(0, 999))
def test_resident_ids(birth, sequence):
    number = make_resident_id('110105', birth, sequence)
    assert candidate_hashes(KEY, number, RESIDENT_ID) == [
        VAULT.lookup_hash(RESIDENT_ID, number)]
    assert VAULT.lookup_hash(RESIDENT_ID, number) in candidate_hashes(
        KEY, number)


def test_candidates():
    # a resident ID is not a valid passport number (the X is, digits too)
    hashes = candidate_hashes(KEY, NUMBER)
    assert VAULT.lookup_hash(RESIDENT_ID, NUMBER) in hashes
    assert candidate_hashes(KEY, '@@@') == []
    assert candidate_hashes(KEY, '') == []
    with pytest.raises(ValueError):
        lookup_hash('not bytes', RESIDENT_ID, NUMBER)
