"""The local SQLite store: round trips, sync application, outbox."""
import os
import stat
import uuid
from datetime import timedelta

import pytest

from box_fakes import (
    AREA, GENERATIONS, NOW, SHANGHAI, demo_data, full_answer, iso)
from scenic_common.gate import Usage
from scenic_iotbox.store import Store, StoreError, normalize_uid, ts


def test_pragmas_and_file_mode(store):
    assert store.query_one('PRAGMA journal_mode')[0] == 'wal'
    assert store.query_one('PRAGMA synchronous')[0] == 2      # FULL
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600


def test_credentials_round_trip(store, clock):
    assert store.credentials() is None
    import base64
    store.save_credentials(42, 's3cret', AREA, GENERATIONS, clock())
    assert store.credentials() == {'box': 42, 'secret': 's3cret',
        'area': AREA}
    generation, = store.gate_generations()
    assert generation['pepper'] == base64.b64decode(
        GENERATIONS[0]['pepper'])
    assert (generation['generation'], generation['log2_n']) == (1, 10)
    assert store.get_meta('area_id') == '1'
    # malformed generations are refused, whole
    for bad in [[], [{'generation': 1}], 'x', [dict(GENERATIONS[0],
            pepper='@@')], [dict(GENERATIONS[0], log2_n=40)]]:
        with pytest.raises(ValueError):
            store.save_credentials(43, 'x', AREA, bad, clock())
    assert store.credentials()['box'] == 42


def test_full_sync_round_trip(store, clock):
    result = store.apply_sync(full_answer(watermark='w#1'), clock())
    assert result['full'] is True
    assert store.get_meta('watermark') == 'w#1'
    assert store.get_meta('timezone') == 'Asia/Shanghai'
    gate, lanes = store.gate(code='MAIN-IN')
    assert (gate.id, gate.zone, gate.direction, gate.active, lanes) == (
        7, 1, 'in', True, 4)
    assert store.gate(id=8)[0].code == 'MAIN-OUT'
    ttype = store.ticket_type(7)
    assert (ttype.code, ttype.zones, ttype.entries, ttype.binding,
        ttype.rule) == ('TWODAY', {1}, 0, 'face', 4)
    rule = store.rule(4)
    assert rule.anti_passback and rule.exit_counts
    assert store.rule(None) is None and store.rule(999) is None
    zone = store.zone_load(1)
    assert (zone.inside, zone.instant_max) == (1234, 5600)
    card, row = store.card('04 a1 b2 c3 d4')
    assert card.id == 9 and card.state == 'active'
    assert card.valid_until.astimezone(SHANGHAI).year == 2027
    assert row['holder_masked'] == '110…1234'
    assert store.card('04C0FFEE01')[0].remaining == 2
    assert [k[0] for k in store.keys()] == [1]


def test_full_sync_replaces(store, clock):
    store.apply_sync(full_answer(), clock())
    data = demo_data()
    data['gates'] = data['gates'][:1]
    data['cards'] = []
    store.apply_sync(full_answer(data), clock())
    assert store.gate(code='MAIN-OUT') == (None, None)
    assert store.card('04A1B2C3D4') == (None, None)
    assert store.counts()['gates'] == 1


def test_incremental_upserts_and_deletes(store, clock):
    store.apply_sync(full_answer(), clock())
    store.apply_sync({'watermark': 'w#2', 'full': False,
        'gates': [{'id': 7, 'code': 'MAIN-IN', 'zone': 1,
            'direction': 'in', 'lanes': 2, 'ticket_types': [5, 6],
            'active': False}],
        'revoked': [{'ticket': 55, 'at': NOW.isoformat()}],
        'deleted': {'cards': ['04dead0001'], 'ticket_types': [13]}},
        clock())
    gate, lanes = store.gate(code='MAIN-IN')
    assert not gate.active and lanes == 2 and gate.ticket_types == {5, 6}
    assert store.gate(code='MAIN-OUT')[0] is not None     # untouched
    assert 55 in store.revoked and 56 not in store.revoked
    assert store.card('04DEAD0001') == (None, None)
    assert store.ticket_type(13) is None
    assert store.get_meta('watermark') == 'w#2'


@pytest.mark.parametrize('bad', [
    [],
    {'gates': [{'id': 1, 'code': 'X', 'direction': 'diagonal'}]},
    {'keys': [{'key_id': 1, 'public_key': 'not base64!'}]},
    {'ticket_types': [{'id': 'five'}]},
    {'cards': [{'uid': '', 'card': 1, 'ticket_type': 1}]},
    {'usage': [{'ticket': 1, 'entries': 1, 'last_entry': 'yesterday'}]},
    {'rules': 'all of them'},
])
def test_bad_answer_changes_nothing(store, clock, bad):
    store.apply_sync(full_answer(watermark='w#1'), clock())
    before = store.counts()
    if isinstance(bad, dict):
        bad = {'watermark': 'w#9', 'full': True, **bad}
    with pytest.raises(StoreError):
        store.apply_sync(bad, clock())
    assert store.counts() == before
    assert store.get_meta('watermark') == 'w#1'


def test_usage_round_trip(store, clock):
    usage = Usage(entries=2, last_entry_at=NOW,
        last_exit_at=NOW - timedelta(hours=1), inside=True,
        binding_ref='ref1')
    with store.transaction() as conn:
        store.save_usage(conn, 'ticket', 5, usage, clock(),
            valid_until=NOW + timedelta(days=1),
            binding={'binding_method': 'face', 'photo_path': '/p.img'})
    assert store.usage('ticket', 5)[0] == usage
    assert store.usage('card', 5)[0] == Usage()
    assert store.binding_files('ref1')['photo_path'] == '/p.img'


def test_usage_merge_keeps_local_scans(store, clock):
    store.apply_sync(full_answer(), clock())
    local = Usage(entries=1, last_entry_at=NOW, inside=True)
    with store.transaction() as conn:
        store.save_usage(conn, 'ticket', 70, local, clock())
        store.append_scan(conn, 'n1', NOW, {'decision': 'open'},
            ticket=70, entry_use=True)
    # the ERP knows an older entry by another box, not ours yet
    store.apply_sync({'watermark': 'w#2', 'full': True, **{
        k: v for k, v in full_answer().items() if k not in ('watermark',
            'full')}, 'usage': [{'ticket': 70, 'entries': 1,
            'last_entry': (NOW - timedelta(hours=2)).isoformat(),
            'inside': False, 'binding': None}]}, clock())
    usage = store.usage('ticket', 70)[0]
    assert usage.entries == 2          # theirs + ours
    assert usage.inside is True        # ours is the latest event
    assert usage.last_entry_at == NOW
    # a later event in the ERP wins the inside flag
    store.apply_sync({'watermark': 'w#3', 'full': False, 'usage': [
        {'ticket': 70, 'entries': 3, 'last_entry': (NOW + timedelta(
            hours=1)).isoformat(), 'inside': False}]}, clock())
    usage = store.usage('ticket', 70)[0]
    assert usage.entries == 4 and usage.inside is False


def test_outbox_and_ack(store, clock):
    nonces = [str(uuid.uuid4()) for _ in range(3)]
    with store.transaction() as conn:
        for nonce in nonces:
            store.append_scan(conn, nonce, clock(), {'nonce': nonce,
                'decision': 'open'}, zone=1, zone_delta=2)
    assert store.outbox_size() == 3
    assert store.zone_load(1).inside == 6
    batch = store.pending_scans(2)
    assert [n for _, n, _ in batch] == nonces[:2]
    ack = store.mark_sent({nonces[0]: 'accepted',
        nonces[1]: 'duplicate'}, clock(), failed=[nonces[2]])
    assert store.outbox_size() == 1
    assert store.scan_by_nonce(nonces[2])['attempts'] == 1
    assert store.scan_by_nonce(nonces[1])['result'] == 'duplicate'
    # a nonce is unique
    with pytest.raises(Exception):
        with store.transaction() as conn:
            store.append_scan(conn, nonces[0], clock(), {})
    # reflected once a sync requested after the ack is applied
    assert store.zone_load(1).inside == 6
    store.apply_sync({'watermark': 'w', 'full': False, 'zones': [
        {'id': 1, 'code': 'MAIN', 'instant_max': 10, 'inside': 4}]},
        clock(), acked_before=ack)
    assert store.zone_load(1).inside == 4 + 2


def test_transaction_rolls_back(store, clock):
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            store.append_scan(conn, 'x', clock(), {})
            raise RuntimeError
    assert store.outbox_size() == 0


def test_reopen_keeps_everything(tmp_path, clock):
    path = tmp_path / 'box.sqlite'
    store = Store(path)
    store.apply_sync(full_answer(watermark='w#5'), clock())
    with store.transaction() as conn:
        store.append_scan(conn, 'n', clock(), {'decision': 'deny'})
    store.close()
    store = Store(path)
    assert store.get_meta('watermark') == 'w#5'
    assert store.outbox_size() == 1
    assert store.gate(code='MAIN-IN')[0].id == 7
    store.close()


def test_purge(store, clock, tmp_path):
    photo = tmp_path / 'p.img'
    photo.write_bytes(b'x')
    with store.transaction() as conn:
        store.append_scan(conn, 'old', NOW - timedelta(days=10),
            {'decision': 'deny'})
        store.save_usage(conn, 'ticket', 1, Usage(entries=1), NOW,
            valid_until=NOW - timedelta(days=2),
            binding={'photo_path': str(photo)})
        store.save_usage(conn, 'ticket', 2, Usage(entries=1), NOW,
            valid_until=NOW + timedelta(days=2))
    store.mark_sent({'old': 'accepted'}, NOW)
    store.purge(NOW)
    assert store.scan_by_nonce('old') is None
    assert store.usage('ticket', 1)[1] is None
    assert store.usage('ticket', 2)[1] is not None
    assert not photo.exists()


def test_helpers():
    assert normalize_uid(' 04:a1-b2 ') == '04A1B2'
    assert normalize_uid(None) == ''
    assert ts(None) is None
    assert ts(NOW) == '2026-05-01T02:00:00.000000+00:00'


def test_rule_resolution(store, clock):
    """As the ERP's upload check: gate's rule, else type's, else default."""
    data = demo_data()
    data['rules'].append({'id': 9, 'early_minutes': 5, 'late_minutes': 0,
        'min_interval_minutes': 0, 'anti_passback': False,
        'exit_counts': False, 'default': True})
    data['gates'][1]['rule'] = 4
    store.apply_sync(full_answer(data), clock())
    assert store.rule_for(7, 3).id == 3           # MAIN-IN: the type's
    assert store.rule_for(8, 3).id == 4           # MAIN-OUT: the gate's
    assert store.rule_for(7, None).id == 9        # the default
    assert store.rule_for(7, 12345).id == 9       # unknown: the default


def test_usage_merge_takes_the_erp_exit(store, clock):
    store.apply_sync(full_answer(), clock())
    with store.transaction() as conn:
        store.save_usage(conn, 'card', 9, Usage(entries=1,
            last_entry_at=NOW, inside=True), clock())
    store.apply_sync({'watermark': 'w#2', 'full': False, 'usage': [
        {'ticket': None, 'card': 9, 'entries': 1,
            'last_entry': NOW.isoformat(),
            'last_exit': (NOW + timedelta(minutes=5)).isoformat(),
            'inside': False, 'binding': None}]}, clock())
    usage = store.usage('card', 9)[0]
    assert usage.inside is False
    assert usage.last_exit_at == NOW + timedelta(minutes=5)
    assert usage.entries == 1


def test_holder_lookup_uses_the_index(store, clock):
    "An ID card at the gate reads its holder's tickets, not every ticket"
    data = demo_data()
    data['tickets'] = [{'ticket': 40 + n, 'holder_hash': f'{n:064X}',
            'code': f'SC1:{n}', 'valid_from': iso(clock()),
            'valid_until': iso(clock() + timedelta(hours=8))}
        for n in range(3)]
    store.apply_sync(full_answer(data, watermark='w#1'), clock())
    plan = ' '.join(row[-1] for row in store.conn.execute(
            'EXPLAIN QUERY PLAN ' + store.holder_query(2),
            ('ab' * 32, 'ab' * 8, ts(clock()), ts(clock()))))
    assert 'USING INDEX tickets_holder' in plan, plan
    # a hash in upper case finds the lower-case one the store keeps
    found = store.tickets_for_holder([f'{1:064X}'],
        clock() - timedelta(hours=1), clock() + timedelta(hours=1))
    assert found == [(41, 'SC1:1')]


def test_store_of_schema_2_forgets_the_lookup_key(tmp_path, clock):
    """A store of before gate hashes: the ID look-up key and every hash
    made with it are wiped at open, and the next sync is a full one."""
    import sqlite3

    from scenic_common import pii
    path = tmp_path / 'old.sqlite'
    store = Store(path)
    store.save_credentials(42, 's3cret', AREA, GENERATIONS, clock())
    data = demo_data()
    data['tickets'] = [{'ticket': 40, 'holder_hash': 'ab' * 32,
        'code': 'SC1:x', 'valid_from': iso(NOW), 'valid_until': iso(NOW)}]
    store.apply_sync(full_answer(data, watermark='w#1'), clock())
    store.close()
    lookup_key = pii.PIIVault('k' * 40).lookup_key()
    conn = sqlite3.connect(path)
    conn.execute('UPDATE credentials SET lookup_key = ?', (lookup_key,))
    conn.execute("UPDATE cards SET holder_hash = ?", ('cd' * 32,))
    conn.execute("INSERT INTO usage (kind, ref, binding_ref) VALUES "
        "('ticket', 40, ?), ('ticket', 41, 'id:g1:ef'), "
        "('card', 5, 'face-1')", ('id:' + 'ab' * 32,))
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    store = Store(path)
    try:
        assert store.get_meta('schema_version') == '4'
        assert store.credentials() == {'box': 42, 'secret': 's3cret',
            'area': AREA}
        assert store.query_one('SELECT lookup_key FROM credentials')[0] \
            is None
        assert store.query('SELECT * FROM tickets') == []
        assert {r[0] for r in store.query(
                'SELECT holder_hash FROM cards')} == {None}
        assert dict(store.query('SELECT ref, binding_ref FROM usage')) == {
            40: None, 41: 'id:g1:ef', 5: 'face-1'}
        assert store.get_meta('watermark') is None
    finally:
        store.close()


def test_store_of_schema_3_gets_partner_codes(tmp_path, clock):
    """Schema 3 -> 4: the partner_codes table is added, nothing else is
    wiped, and the next sync is a full one (it brings the codes)."""
    import sqlite3
    path = tmp_path / 'v3.sqlite'
    store = Store(path)
    store.save_credentials(42, 's3cret', AREA, GENERATIONS, clock())
    data = demo_data()
    data['tickets'] = [{'ticket': 40, 'holder_hash': 'ab' * 32,
        'code': 'SC1:x', 'valid_from': iso(NOW), 'valid_until': iso(NOW)}]
    store.apply_sync(full_answer(data, watermark='w#1'), clock())
    store.close()
    conn = sqlite3.connect(path)
    conn.execute('DROP TABLE partner_codes')
    conn.execute("INSERT INTO usage (kind, ref, binding_ref) VALUES "
        "('ticket', 41, 'id:g1:ef')")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    store = Store(path)
    try:
        assert store.get_meta('schema_version') == '4'
        assert store.get_meta('watermark') is None
        assert [r[0] for r in store.query('SELECT ticket FROM tickets')] \
            == [40]
        assert store.query('SELECT binding_ref FROM usage')[0][0] \
            == 'id:g1:ef'
        assert store.query('SELECT * FROM partner_codes') == []
    finally:
        store.close()


def test_partner_codes_synced_checked_and_purged(store, clock):
    """Partner codes arrive by hash, upsert by ticket, and a malformed one
    refuses the whole answer."""
    code = {'ticket': 60, 'hash': 'AB' * 32, 'ticket_type': 5,
        'persons': 1, 'entries': 1, 'valid_from': iso(NOW),
        'valid_until': iso(NOW + timedelta(hours=2))}
    store.apply_sync(full_answer(dict(demo_data(), partner_codes=[code])),
        clock())
    found = store.partner_ticket(['ab' * 32], AREA)
    assert (found.ticket_id, found.ticket_type_id, found.area_id) == (
        60, 5, AREA)
    assert store.partner_ticket(['cd' * 32], AREA) is None
    for bad in ({'hash': 'not-hex'}, {'persons': 0}, {'valid_until': None}):
        with pytest.raises(StoreError):
            store.apply_sync({'watermark': 'w#2', 'full': False,
                'partner_codes': [dict(code, **bad)]}, clock())
    assert store.counts()['partner_codes'] == 1
    store.purge(NOW + timedelta(days=2))
    assert store.counts()['partner_codes'] == 0
