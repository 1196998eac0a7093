"""The box's gate hash of a read ID number equals the ERP's stored one."""
import base64
import datetime

import pytest
from hypothesis import given, settings, strategies as st

from scenic_common import pii, protocol
from scenic_common.idnumber import (
    HK_MACAU_PERMIT, PASSPORT, RESIDENT_ID, make_resident_id)
from scenic_iotbox.idhash import binding_ref, candidate_hashes, ref_generation

MASTER = 'a-master-key-for-the-tests-0123456789abcdef'
VAULT = pii.PIIVault(MASTER)
AREA = 7
# what enrolment sends: no key of the ERP, a pepper per generation
GENERATION, = protocol.parse_generations(protocol.generation_answer(
    VAULT.gate_secret(), AREA, [(1, 10)]))
NUMBER = '11010519491231002X'


def erp_hash(id_type, number, area=AREA, generation=1, log2_n=10):
    "What scenic_gate.gatehash stores for a holder."
    return protocol.gate_hash(protocol.gate_pepper(VAULT.gate_secret(),
            area, generation), id_type, number, log2_n)


def test_same_as_the_erp():
    for id_type, number in [(RESIDENT_ID, NUMBER),
            (RESIDENT_ID, '11010519491231002x'),
            (PASSPORT, 'e12345678'), (HK_MACAU_PERMIT, 'H12345678')]:
        assert candidate_hashes(GENERATION, number, id_type) == [
            erp_hash(id_type, number)]


def test_peppers_are_per_area_and_generation():
    secret = VAULT.gate_secret()
    peppers = {protocol.gate_pepper(secret, area, gen)
        for area in (1, 2) for gen in (1, 2)}
    assert len(peppers) == 4
    # nothing the box gets is a key of the ERP
    assert GENERATION['pepper'] not in (VAULT.lookup_key(), secret)
    assert erp_hash(RESIDENT_ID, NUMBER, area=8) != erp_hash(
        RESIDENT_ID, NUMBER)
    assert erp_hash(RESIDENT_ID, NUMBER) != VAULT.lookup_hash(
        RESIDENT_ID, NUMBER)


@settings(max_examples=20, deadline=None)
@given(st.dates(min_value=datetime.date(1930, 1, 1),
    max_value=datetime.date(2020, 1, 1)), st.integers(0, 999))
def test_resident_ids(birth, sequence):
    number = make_resident_id('110105', birth, sequence)
    assert candidate_hashes(GENERATION, number, RESIDENT_ID) == [
        erp_hash(RESIDENT_ID, number)]
    assert erp_hash(RESIDENT_ID, number) in candidate_hashes(
        GENERATION, number)


def test_candidates_and_references():
    hashes = candidate_hashes(GENERATION, NUMBER)
    assert erp_hash(RESIDENT_ID, NUMBER) in hashes
    assert candidate_hashes(GENERATION, '@@@') == []
    assert candidate_hashes(GENERATION, '') == []
    ref = binding_ref(GENERATION, hashes[0])
    assert ref == f'id:g1:{hashes[0]}'
    assert ref_generation(ref) == 1
    # references of before gate hashes, and others, have no generation
    assert ref_generation('id:' + 'ab' * 32) is None
    assert ref_generation('3f2a') is None
    assert ref_generation(None) is None
    with pytest.raises(ValueError):
        protocol.gate_hash(b'short', RESIDENT_ID, NUMBER)
    with pytest.raises(ValueError):
        protocol.gate_hash(GENERATION['pepper'], RESIDENT_ID, NUMBER,
            log2_n=30)


def test_parse_generations():
    good = protocol.generation_answer(b'k' * 32, 1, [(2, 14), (1, 12)])
    parsed = protocol.parse_generations(good)
    assert [(g['generation'], g['log2_n']) for g in parsed] == [
        (2, 14), (1, 12)]
    assert parsed[0]['pepper'] == base64.b64decode(good[0]['pepper'])
    for bad in [None, [], [1], [{}], [dict(good[0], generation=True)],
            [dict(good[0], r=0)], [dict(good[0], pepper='AAAA')],
            good * 5]:
        with pytest.raises(ValueError):
            protocol.parse_generations(bad)
