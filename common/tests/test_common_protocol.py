"""The gate protocol's shared rules: the ERP and the box agree.

The box applies its scans as they happen (gate.usage_after after each open
decision); the ERP applies the uploaded scans in whatever order the batches
arrive (protocol.record_use). Property tests: for random scan sequences,
arriving in any order, both end with the same usage; the box's merge of
the ERP's view never loses what either side saw.
"""
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from scenic_common import gate, idnumber, pii, protocol
from scenic_common.gate import Decision, Usage

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=timezone.utc)

scans = st.lists(st.tuples(
        st.sampled_from([protocol.IN, protocol.OUT]),
        st.integers(0, 600),  # minutes after T0: ties happen
        ), min_size=0, max_size=25)


def as_events(raw):
    "(direction, at, binding_ref): the first entry captures a binding."
    events, bound = [], False
    for direction, minutes in raw:
        binding = None
        if direction == protocol.IN and not bound:
            binding, bound = f'bind-{minutes}', True
        events.append((direction, T0 + timedelta(minutes=minutes), binding))
    return events


def box_usage(events):
    "The box: each scan decided and recorded as it happens, in time order."
    usage = None
    for direction, at, binding in sorted(events, key=lambda e: e[1]):
        decision = Decision(action=gate.OPEN, reason=gate.OK, persons=1,
            direction=direction)
        usage = gate.usage_after(usage, decision, at, binding_ref=binding)
    return usage or gate.NO_USAGE


def erp_usage(events, usage=None):
    "The ERP: uploaded scans recorded in the order they arrive."
    usage = usage or gate.NO_USAGE
    for direction, at, binding in events:
        usage = protocol.record_use(usage, direction, at, binding)
    return usage


@settings(max_examples=300, deadline=None)
@given(scans, st.randoms(use_true_random=False))
def test_erp_and_box_agree_in_any_arrival_order(raw, random):
    events = as_events(raw)
    arrived = list(events)
    random.shuffle(arrived)
    assert erp_usage(arrived) == box_usage(events)


@settings(max_examples=300, deadline=None)
@given(scans, st.integers(0, 25), st.randoms(use_true_random=False))
def test_merge_keeps_what_either_side_saw(raw, cut, random):
    "After a sync, the box's usage is what all scans together give"
    events = sorted(as_events(raw), key=lambda e: e[1])
    local = box_usage(events)
    # The ERP has seen some of the box's scans (uploaded out of order);
    # the others are still in the box's outbox.
    seen = list(events)
    random.shuffle(seen)
    seen, unseen = seen[:cut], seen[cut:]
    erp = erp_usage(seen)
    unseen_entries = sum(1 for e in unseen if e[0] == protocol.IN)
    merged = protocol.merge_usage(local, erp, unseen_entries)
    assert merged.entries == local.entries
    assert merged.last_entry_at == local.last_entry_at
    assert merged.last_exit_at == local.last_exit_at
    assert merged.inside == local.inside
    assert merged.binding_ref == local.binding_ref
    # A box that knew nothing takes the ERP's view whole.
    assert protocol.merge_usage(gate.NO_USAGE, erp, 0,
        local_known=False) == erp


@settings(max_examples=100, deadline=None)
@given(scans, scans)
def test_merge_of_two_boxes(first, second):
    "Another box's scans reach this box through the ERP: entries add up"
    mine, theirs = as_events(first), as_events(second)
    local = box_usage(mine)
    erp = erp_usage(mine + theirs)
    merged = protocol.merge_usage(local, erp, 0)
    assert merged.entries == len(
        [e for e in mine + theirs if e[0] == protocol.IN])
    assert merged.last_entry_at == erp.last_entry_at
    assert merged.last_exit_at == erp.last_exit_at


def test_record_use_out_of_order():
    entered = protocol.record_use(Usage(), protocol.IN, T0 + timedelta(hours=2))
    # An earlier exit arriving late does not put the holder outside.
    late_exit = protocol.record_use(entered, protocol.OUT, T0)
    assert late_exit.inside
    assert late_exit.entries == 1
    left = protocol.record_use(late_exit, protocol.OUT, T0 + timedelta(hours=3))
    assert not left.inside
    # An exit at the same instant as the entry wins.
    tie = protocol.record_use(entered, protocol.OUT, T0 + timedelta(hours=2))
    assert not tie.inside
    # The first binding captured stays.
    bound = protocol.record_use(Usage(binding_ref='a'), protocol.IN, T0, 'b')
    assert bound.binding_ref == 'a'


def test_entries_for():
    assert protocol.entries_for('single', 5) == 1
    assert protocol.entries_for('unlimited', 5) == 0
    assert protocol.entries_for('multiple', 3) == 3
    assert protocol.entries_for('multiple', None) == 0
    assert set(protocol.ENTRY_MODES) == {'single', 'multiple', 'unlimited'}


def test_rule_id_for():
    known = {1, 2, 3}.__contains__
    assert protocol.rule_id_for(1, 2, 3) == 1
    assert protocol.rule_id_for(None, 2, 3) == 2
    assert protocol.rule_id_for(None, None, 3) == 3
    assert protocol.rule_id_for(None, None, None) is None
    # A rule the reader does not have is skipped.
    assert protocol.rule_id_for(9, 2, 3, known=known) == 2
    assert protocol.rule_id_for(9, 8, 3, known=known) == 3


@settings(max_examples=50, deadline=None)
@given(st.dates(min_value=datetime(1930, 1, 1).date(),
        max_value=datetime(2020, 1, 1).date()), st.integers(0, 999))
def test_candidate_hashes_erp_and_box(birth, sequence):
    "The ERP's look-up hashes and a hash function given its key agree"
    vault = pii.PIIVault('a-master-key-for-the-tests-0123456789abcdef')
    key = vault.lookup_key()

    def box_hash(id_type, number):
        return pii.keyed_mac(key, id_type, number).hex()
    number = idnumber.make_resident_id('110105', birth, sequence)
    erp = protocol.candidate_hashes(vault.lookup_hash, number)
    assert erp == protocol.candidate_hashes(box_hash, number)
    assert vault.lookup_hash(idnumber.RESIDENT_ID, number) in erp
    assert protocol.candidate_hashes(vault.lookup_hash, number,
        idnumber.RESIDENT_ID) == [
        vault.lookup_hash(idnumber.RESIDENT_ID, number)]
    assert protocol.candidate_hashes(vault.lookup_hash, '@@@') == []


def test_gate_hashes_are_salted_per_area_and_generation():
    "Gate hashes: the ERP's gate secret, one pepper per area × generation"
    vault = pii.PIIVault('a-master-key-for-the-tests-0123456789abcdef')
    secret = vault.gate_secret()
    assert secret != vault.lookup_key() and len(secret) == 32
    number = idnumber.make_resident_id('110105', datetime(1980, 2, 3).date(),
        5)
    hashes = {protocol.gate_hash(protocol.gate_pepper(secret, area, gen),
            idnumber.RESIDENT_ID, number, 10)
        for area in (1, 2) for gen in (1, 2)}
    assert len(hashes) == 4
    generation, = protocol.parse_generations(
        protocol.generation_answer(secret, 1, [(1, 10)]))
    assert protocol.gate_hashes(generation, number.lower()) == [
        protocol.gate_hash(protocol.gate_pepper(secret, 1, 1),
            idnumber.RESIDENT_ID, number, 10)]


def test_constants():
    assert protocol.MEDIA == ('qr', 'id_card', 'rfid')
    assert protocol.BATCH_SIZE == 1000
    assert gate.DIRECTIONS == (protocol.IN, protocol.OUT)
