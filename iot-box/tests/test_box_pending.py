"""The ``pending`` counters (what unreflected scans add to the ERP's zone
headcount and count-card balances) against a recount of the outbox."""
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from box_fakes import AREA, GENERATIONS, NOW, Clock, full_answer, sign
from scenic_iotbox.store import Store
from scenic_iotbox.validator import ScanRequest, Validator

ZONE = 1
COUNT_CARD, COUNT_UID = 10, '04C0FFEE01'      # 2 entries left (demo data)


def recount(store):
    """The counters recomputed from the outbox, in Python."""
    expected = Counter()
    for row in store.query('SELECT zone, zone_delta, card, card_use '
            'FROM outbox WHERE reflected = 0'):
        if row['zone'] is not None:
            expected['zone', row['zone']] += row['zone_delta']
        if row['card'] is not None and row['card_use']:
            expected['card', row['card']] += 1
    return {k: v for k, v in expected.items() if v}


def counters(store):
    return {(r['kind'], r['ref']): r['value']
        for r in store.query('SELECT kind, ref, value FROM pending')}


def assert_exact(store):
    assert counters(store) == recount(store)
    erp_inside = store.query_one('SELECT inside FROM zones WHERE id = ?',
        (ZONE,))
    erp_inside = erp_inside[0] if erp_inside else 0
    pending = recount(store).get(('zone', ZONE), 0)
    assert store.zone_load(ZONE).inside == max(erp_inside + pending, 0)
    card, row = store.card(COUNT_UID)
    if card is not None:
        assert card.remaining == row['remaining'] - recount(store).get(
            ('card', COUNT_CARD), 0)


def synced(path, clock):
    store = Store(path)
    store.save_credentials(42, 'secret', AREA, GENERATIONS, clock())
    store.apply_sync(full_answer(), clock())
    return store


def append(store, when, **effects):
    nonce = str(uuid.uuid4())
    with store.transaction() as conn:
        store.append_scan(conn, nonce, when, {'nonce': nonce,
            'decision': effects.pop('decision', 'open')}, **effects)
    return nonce


# --- random sequences -------------------------------------------------

appends = st.tuples(st.just('append'),
    st.sampled_from([None, 1, 2]),            # zone
    st.integers(-3, 3),                       # zone_delta
    st.sampled_from([None, COUNT_CARD, 9]),   # card
    st.booleans(),                            # card_use
    st.sampled_from(['open', 'deny']),
    st.sampled_from([0, 10]))                 # age in days (for purge)
scans = st.tuples(st.just('scan'), st.sampled_from(
    ['qr_in', 'qr_out', 'group_in', 'card_in', 'card_out']))
sends = st.tuples(st.just('send'), st.integers(0, 5),
    st.sampled_from(['accepted', 'duplicate', 'conflict:already_used',
        'rejected:scans[0].gate: unknown gate']),
    st.integers(0, 2))                        # how many fail
syncs = st.tuples(st.just('sync'), st.booleans(),     # full
    st.sampled_from(['now', 'stale', 'none']),         # acked_before
    st.integers(0, 3000))                              # the ERP's inside
others = st.sampled_from([('purge',), ('reopen',), ('rebuild',)])
operations = st.lists(st.one_of(appends, scans, sends, syncs, others),
    max_size=25)


@settings(max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_counters_equal_a_recount_after_any_sequence(ops):
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'box.sqlite'
        store = synced(path, clock)
        validator = Validator(store, tmp, clock=clock)
        ticket = 1000
        stale_ack = 0
        try:
            for op in ops:
                clock.advance(minutes=1)
                if op[0] == 'append':
                    _, zone, delta, card, card_use, decision, age = op
                    append(store, clock() - timedelta(days=age), zone=zone,
                        zone_delta=delta, card=card, card_use=card_use,
                        entry_use=card_use, decision=decision)
                elif op[0] == 'scan':
                    ticket += 1
                    validator.scan({
                        'qr_in': ScanRequest('MAIN-IN', 1, 'qr',
                            sign(ticket)),
                        'qr_out': ScanRequest('MAIN-OUT', 1, 'qr',
                            sign(ticket)),
                        'group_in': ScanRequest('MAIN-IN', 2, 'qr',
                            sign(ticket, type_id=6, persons=10)),
                        'card_in': ScanRequest('MAIN-IN', 3, 'rfid',
                            COUNT_UID),
                        'card_out': ScanRequest('MAIN-OUT', 3, 'rfid',
                            COUNT_UID),
                    }[op[1]])
                elif op[0] == 'send':
                    _, count, result, failing = op
                    batch = [n for _, n, _ in store.pending_scans(count)]
                    store.mark_sent({n: result for n in batch[failing:]},
                        clock(), failed=batch[:failing])
                elif op[0] == 'sync':
                    _, full, ack, inside = op
                    acked = {'now': store.ack_seq(), 'stale': stale_ack,
                        'none': None}[ack]
                    stale_ack = store.ack_seq()
                    zones = [{'id': ZONE, 'code': 'MAIN',
                        'instant_max': 5600, 'inside': inside}]
                    answer = full_answer(watermark=f'w#{clock()}') if full \
                        else {'watermark': f'w#{clock()}', 'full': False}
                    answer['zones'] = zones
                    store.apply_sync(answer, clock(), acked_before=acked)
                elif op[0] == 'purge':
                    store.purge(clock())
                elif op[0] == 'reopen':
                    store.close()
                    store = Store(path)
                    validator.store = store
                elif op[0] == 'rebuild':
                    with store.transaction() as conn:
                        store.rebuild_pending(conn)
                assert_exact(store)
        finally:
            store.close()


# --- the cases named one by one ------------------------------------------

def test_denials_and_rollbacks_add_nothing(store, clock):
    store.apply_sync(full_answer(), clock())
    append(store, clock(), zone=ZONE, zone_delta=1, decision='deny')
    try:
        with store.transaction() as conn:
            store.append_scan(conn, 'rolled-back', clock(),
                {'decision': 'open'}, zone=ZONE, zone_delta=5)
            assert store.pending('zone', ZONE, conn) == 5
            raise RuntimeError('the decision failed')
    except RuntimeError:
        pass
    assert counters(store) == {}
    assert store.zone_load(ZONE).inside == 1234


def test_reflection_rejection_and_purge(store, clock):
    store.apply_sync(full_answer(), clock())
    old = clock() - timedelta(days=10)
    entered = append(store, old, zone=ZONE, zone_delta=3)
    refused = append(store, old, zone=ZONE, zone_delta=2, card=COUNT_CARD,
        card_use=True)
    waiting = append(store, clock(), zone=ZONE, zone_delta=-1)
    assert counters(store) == {('zone', ZONE): 4, ('card', COUNT_CARD): 1}
    ack = store.mark_sent({entered: 'accepted',
        refused: 'rejected:scans[1].gate: unknown'}, clock())
    # sent but not reflected until a sync asked after the ack
    assert counters(store) == {('zone', ZONE): 4, ('card', COUNT_CARD): 1}
    store.apply_sync({'watermark': 'w#1', 'full': False}, clock(),
        acked_before=ack - 1)
    assert counters(store) == {('zone', ZONE): 4, ('card', COUNT_CARD): 1}
    store.apply_sync({'watermark': 'w#2', 'full': False, 'zones': [
        {'id': ZONE, 'code': 'MAIN', 'instant_max': 5600, 'inside': 1237}]},
        clock(), acked_before=ack)
    assert counters(store) == {('zone', ZONE): -1}
    assert store.zone_load(ZONE).inside == 1236
    assert store.card(COUNT_UID)[0].remaining == 2
    store.purge(clock())
    assert store.scan_by_nonce(entered) is None
    assert store.scan_by_nonce(waiting) is not None
    assert counters(store) == recount(store) == {('zone', ZONE): -1}


def test_decision_reads_no_outbox(validator, synced_store, clock):
    """zone_load, card and a whole decision read the counters, not the
    outbox, whatever the backlog (SQLite's authorizer sees every table a
    statement reads)."""
    store = synced_store
    with store.transaction() as conn:
        for i in range(3000):
            store.append_scan(conn, f'backlog-{i}', clock(),
                {'decision': 'open'}, zone=ZONE,
                zone_delta=1 if i % 3 else -1, card=COUNT_CARD,
                card_use=i == 0)
    tables = Counter()

    def authorizer(action, arg1, arg2, db, trigger):
        # the insert trigger reads the new row only (``new.zone``…)
        if action == sqlite3.SQLITE_READ and trigger is None:
            tables[arg1] += 1
        return sqlite3.SQLITE_OK

    with store.lock:
        store.conn.set_authorizer(authorizer)
    try:
        load = store.zone_load(ZONE)
        card, _ = store.card(COUNT_UID)
        result = validator.scan(ScanRequest('MAIN-IN', 1, 'qr', sign(77)))
    finally:
        with store.lock:
            store.conn.set_authorizer(None)
    assert tables['pending'] and tables['zones'] and tables['cards']
    assert tables['outbox'] == 0
    assert load.inside == 1234 + 1000
    assert card.remaining == 1
    assert result.decision.action == 'open'
    assert store.zone_load(ZONE).inside == 1234 + 1001
    assert counters(store) == recount(store)


def test_store_of_schema_1_is_recounted_at_open(tmp_path, clock):
    path = tmp_path / 'box.sqlite'
    store = synced(path, clock)
    append(store, clock(), zone=ZONE, zone_delta=2, card=COUNT_CARD,
        card_use=True)
    store.close()
    # what version 1 left: no counters, scans written without them
    conn = sqlite3.connect(path)
    conn.executescript("""
        DROP TRIGGER outbox_pending_insert;
        DROP TRIGGER outbox_pending_update_old;
        DROP TRIGGER outbox_pending_update_new;
        DROP TRIGGER outbox_pending_delete;
        DROP TABLE pending;
        UPDATE meta SET value = '1' WHERE key = 'schema_version';
        INSERT INTO outbox (nonce, created_at, payload, zone, zone_delta)
            VALUES ('v1', '2026-05-01T02:00:00+00:00', '{}', 1, 3);
    """)
    conn.close()
    store = Store(path)
    try:
        assert store.get_meta('schema_version') == '4'
        assert counters(store) == recount(store) == {('zone', ZONE): 5,
            ('card', COUNT_CARD): 1}
        assert store.zone_load(ZONE).inside == 1234 + 5
        assert store.card(COUNT_UID)[0].remaining == 1
    finally:
        store.close()


def test_crash_in_a_decision_leaves_the_counters_exact(tmp_path, clock):
    path = tmp_path / 'box.sqlite'
    store = synced(path, clock)
    append(store, clock(), zone=ZONE, zone_delta=1)
    store.close()
    # a process dies mid-transaction: its scan and its count go together
    script = (
        'import os, sys\n'
        'from datetime import datetime, timezone\n'
        'from scenic_iotbox.store import Store\n'
        'store = Store(sys.argv[1])\n'
        'store.conn.execute("BEGIN IMMEDIATE")\n'
        'store.append_scan(store.conn, "dying", datetime.now(timezone.utc),'
        ' {"decision": "open"}, zone=1, zone_delta=7)\n'
        'os._exit(3)\n')
    done = subprocess.run([sys.executable, '-c', script, str(path)],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    store = Store(path)
    try:
        assert store.scan_by_nonce('dying') is None
        assert counters(store) == recount(store) == {('zone', ZONE): 1}
    finally:
        store.close()
