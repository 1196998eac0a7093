"""The ERP client and sync loop against a fake ERP (http.server)."""
import time

import pytest

from box_fakes import AREA, GENERATIONS, NOW, sign
from scenic_iotbox.store import Store
from scenic_iotbox.sync import (
    BoxRevoked, ErpClient, ErpRejected, ErpUnauthorized, ErpUnavailable,
    NotEnrolled, SyncEngine)
from scenic_iotbox.validator import ScanRequest, Validator


def engine_for(store, erp, clock, **kwargs):
    client = ErpClient(erp.url, erp.database, timeout=2,
        credentials=store.credentials)
    kwargs.setdefault('sync_interval', 0.05)
    kwargs.setdefault('max_backoff', 0.2)
    return SyncEngine(store, client, name='test-box', hostname='h',
        clock=clock, **kwargs)


@pytest.fixture
def engine(store, fake_erp, clock):
    engine = engine_for(store, fake_erp, clock)
    engine.enrol('TOKEN-1')
    yield engine
    engine.stop()


@pytest.fixture
def box(store, engine, tmp_path, clock):
    return Validator(store, tmp_path, clock=clock,
        online=lambda: engine.online)


def scan_codes(box, first, count, gate='MAIN-IN'):
    results = []
    for n in range(count):
        results.append(box.scan(ScanRequest(gate=gate, lane=1 + n % 4,
            medium='qr', data=sign(first + n))))
    return results


def wait_for(condition, timeout=30):
    """Poll (not a timing assertion: only a generous deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_enrol(store, fake_erp, clock):
    engine = engine_for(store, fake_erp, clock)
    answer = engine.enrol('TOKEN-1')
    creds = store.credentials()
    assert creds['box'] == 42 == answer['box']
    assert creds['secret'] == fake_erp.boxes[42]
    assert 'lookup_key' not in creds
    assert [g['generation'] for g in store.gate_generations()] == [1]
    assert store.get_meta('area_id') == str(AREA)
    # the token is spent
    with pytest.raises(ErpUnauthorized):
        engine.enrol('TOKEN-1')


def test_not_enrolled(store, fake_erp, clock):
    engine = engine_for(store, fake_erp, clock)
    with pytest.raises(NotEnrolled):
        engine.run_once()
    engine.enrolment_token = 'TOKEN-1'
    engine.run_once()            # enrols with the configured token
    assert store.credentials()['box'] == 42


def test_full_then_incremental_sync(engine, store, fake_erp):
    engine.sync()
    assert fake_erp.syncs == [None]
    counts = store.counts()
    assert counts['gates'] == 2 and counts['cards'] == 3
    assert counts['ticket_types'] == 6 and counts['keys'] == 1
    watermark = store.get_meta('watermark')
    fake_erp.revoke(777)
    fake_erp.change('gates', {'id': 9, 'code': 'EAST-IN', 'zone': 1,
        'direction': 'in', 'lanes': 2, 'ticket_types': [5],
        'active': True})
    result = engine.sync()
    assert fake_erp.syncs[-1] == watermark
    assert result['full'] is False
    assert 777 in store.revoked
    assert store.gate(code='EAST-IN')[0].ticket_types == {5}
    assert store.counts()['gates'] == 3


def test_sync_answer_gzip_and_auth_header(engine, fake_erp):
    engine.sync()
    assert ('GET', '/demo/scenic/gate/v1/sync') in fake_erp.requests


def test_bad_credentials(engine, store, fake_erp):
    fake_erp.boxes[42] = 'changed'
    with pytest.raises(ErpUnauthorized):
        engine.sync()


def test_revoked_box_forgets(engine, store, fake_erp, box):
    engine.run_once()
    assert box.scan(ScanRequest('MAIN-IN', 1, 'qr', sign(100))) \
        .decision.opened
    fake_erp.revoked_boxes.add(42)
    with pytest.raises(BoxRevoked):
        engine.run_once()
    assert store.credentials() is None
    assert store.counts()['gates'] == 0
    assert not box.scan(ScanRequest('MAIN-IN', 1, 'qr', sign(101))) \
        .decision.opened
    with pytest.raises(BoxRevoked):
        engine.run_once()


def test_upload_and_heartbeat(engine, store, fake_erp, box):
    engine.run_once()
    results = scan_codes(box, 1000, 3)
    assert store.outbox_size() == 3
    engine.run_once()
    assert store.outbox_size() == 0
    assert set(fake_erp.scans) == {r.nonce for r in results}
    scan = fake_erp.scans[results[0].nonce]
    assert scan['gate'] == 7 and scan['ticket'] == 1000
    assert scan['decision'] == 'open' and scan['persons'] == 1
    [beat] = fake_erp.heartbeats
    assert beat['version'] and beat['outbox'] == 0
    assert beat['sync_lag_s'] is not None and beat['sync_lag_s'] >= 0


def test_heartbeat_devices_in_the_erps_terms(engine, fake_erp):
    from scenic_iotbox.sync import heartbeat_devices
    engine.devices = lambda: [
        {'kind': 'turnstile', 'name': 'serial', 'ok': True, 'errors': 2,
            'lanes': [{'lane': 1}], 'counters': {'opens': 3}},
        {'kind': 'qr', 'name': 'wedge', 'ok': False, 'errors': True},
        {'kind': 'idcard', 'name': '', 'ok': 1},
        {'kind': 'biometric', 'name': 'face', 'ok': True, 'errors': 0},
        {'kind': 'toaster', 'name': 'x', 'ok': True},
        'not a dict']
    engine.run_once()
    assert fake_erp.heartbeats[-1]['devices'] == [
        {'kind': 'turnstile', 'name': 'serial', 'ok': True, 'errors': 2},
        {'kind': 'qr_reader', 'name': 'wedge', 'ok': False, 'errors': 0},
        {'kind': 'id_reader', 'name': 'idcard', 'ok': False, 'errors': 0},
        {'kind': 'camera', 'name': 'face', 'ok': True, 'errors': 0}]
    assert heartbeat_devices([]) == []


def test_refused_heartbeat_keeps_the_box_online(engine, fake_erp, store):
    original = engine.client.heartbeat

    def refuse(body):
        raise ErpRejected('bad kind', status=422, code='invalid_request',
            field='devices[0].kind')
    engine.client.heartbeat = refuse
    engine.step()
    assert engine.online and engine.failures == 0
    engine.client.heartbeat = original


def test_exactly_once_across_an_outage(engine, store, fake_erp, box, clock):
    engine.run_once()
    before = scan_codes(box, 2000, 5)
    fake_erp.off()
    # hours without the ERP: every round fails, scans keep queueing
    for hour in range(3):
        clock.advance(hours=1)
        engine.step()
        before += scan_codes(box, 2100 + hour * 10, 4)
    assert engine.failures == 3 and not engine.online
    assert store.outbox_size() == 17
    assert all(r.decision.opened for r in before)
    rows = store.query('SELECT attempts, last_error FROM outbox')
    assert all(r['attempts'] == 3 for r in rows[:5])
    fake_erp.on()
    engine.step()
    assert engine.online and engine.failures == 0
    assert store.outbox_size() == 0
    nonces = [r.nonce for r in before]
    assert set(fake_erp.scans) == set(nonces)
    assert all(fake_erp.upload_count(n) == 1 for n in nonces)
    assert all(fake_erp.scans[n]['offline'] for n in nonces[5:])


def test_lost_answers_are_resent_and_acknowledged_as_duplicates(
        engine, store, fake_erp, box):
    engine.run_once()
    results = scan_codes(box, 3000, 4)
    fake_erp.lose_answers = 1          # the ERP stores, the answer is lost
    with pytest.raises(ErpUnavailable):
        engine.upload_pending()
    assert store.outbox_size() == 4
    assert len(fake_erp.scans) == 4
    engine.upload_pending()
    assert store.outbox_size() == 0
    for result in results:
        assert fake_erp.upload_count(result.nonce) == 2
        assert store.scan_by_nonce(result.nonce)['result'] == 'duplicate'
    # stored once by the ERP
    assert len(fake_erp.scans) == 4
    # nothing is sent again
    engine.upload_pending()
    assert all(fake_erp.upload_count(r.nonce) == 2 for r in results)


def test_batches_of_at_most_1000(engine, store, fake_erp, box, clock):
    engine.run_once()
    # 2300 scans queued (written in one transaction to keep the test fast)
    import uuid
    with store.transaction() as conn:
        for n in range(2300):
            nonce = str(uuid.uuid4())
            store.append_scan(conn, nonce, clock(), {'nonce': nonce,
                'at': clock().isoformat(), 'gate': 7, 'lane': 1,
                'medium': 'qr', 'ticket': None, 'card': None,
                'decision': 'deny', 'reason': 'malformed', 'persons': 0,
                'direction': 'in', 'offline': True, 'binding': None})
    engine.upload_pending()
    sizes = [len(b) for b in fake_erp.batches]
    assert sizes == [1000, 1000, 300]
    assert store.outbox_size() == 0
    ordered = [n for b in fake_erp.batches for n in b]
    assert len(set(ordered)) == 2300
    seqs = [store.scan_by_nonce(n)['seq'] for n in ordered]
    assert seqs == sorted(seqs)      # oldest first


def test_a_scan_the_erp_refuses_does_not_block_the_outbox(engine, store,
        fake_erp, box, clock):
    engine.run_once()
    first = scan_codes(box, 5000, 2)
    with store.transaction() as conn:
        store.append_scan(conn, 'bad-one', clock(), {'nonce': 'bad-one',
            'at': 'yesterday', 'gate': 7, 'medium': 'qr',
            'decision': 'deny', 'direction': 'in'})
    last = scan_codes(box, 5010, 2)
    engine.upload_pending()
    assert store.outbox_size() == 0
    assert store.scan_by_nonce('bad-one')['result'].startswith(
        'rejected:scans[2].at')
    assert 'bad-one' not in fake_erp.scans
    assert all(r.nonce in fake_erp.scans for r in first + last)


def test_conflicts_are_acknowledged_and_kept(engine, store, fake_erp, box,
        tmp_path, clock):
    engine.run_once()
    code = sign(50)
    first = box.scan(ScanRequest('MAIN-IN', 1, 'qr', code))
    # another box, cut off, admitted the same single-entry ticket
    other_store = Store(tmp_path / 'other.sqlite')
    other_store.save_credentials(42, fake_erp.boxes[42], AREA, GENERATIONS,
        clock())
    other_engine = engine_for(other_store, fake_erp, clock)
    other_engine.sync()
    other = Validator(other_store, tmp_path / 'o', clock=clock)
    second = other.scan(ScanRequest('MAIN-IN', 2, 'qr', code))
    assert first.decision.opened and second.decision.opened
    engine.upload_pending()
    other_engine.upload_pending()
    assert other_store.scan_by_nonce(second.nonce)['result'] == \
        'conflict:already_used'
    assert other_store.outbox_size() == 0
    other_store.close()


def test_headcount_and_balance_not_counted_twice(engine, store, fake_erp,
        box):
    engine.run_once()
    assert store.zone_load(1).inside == 1234
    box.scan(ScanRequest('MAIN-IN', 1, 'qr', sign(60, type_id=6,
        persons=10)))
    box.scan(ScanRequest('MAIN-IN', 1, 'rfid', '04C0FFEE01'))
    assert store.zone_load(1).inside == 1245
    assert store.card('04C0FFEE01')[0].remaining == 1
    engine.upload_pending()
    # uploaded but not yet seen in a sync answer: still counted locally
    assert store.zone_load(1).inside == 1245
    assert store.card('04C0FFEE01')[0].remaining == 1
    engine.sync()
    assert fake_erp.data['zones'][0]['inside'] == 1245
    assert store.zone_load(1).inside == 1245
    assert store.card('04C0FFEE01')[0].remaining == 1


def test_usage_from_the_erp_is_merged(engine, store, fake_erp, box):
    engine.run_once()
    code = sign(70, type_id=7, entries=0)   # TWODAY: face, re-entry
    fake_erp.change('usage', {'ticket': 70, 'entries': 1,
        'last_entry': NOW.isoformat(), 'inside': True,
        'binding': 'ref-from-box-b'}, key='ticket')
    engine.sync()
    usage, _ = store.usage('ticket', 70)
    assert usage.entries == 1 and usage.inside
    assert usage.binding_ref == 'ref-from-box-b'
    # inside (anti-passback): another entry is refused
    result = box.scan(ScanRequest('MAIN-IN', 1, 'qr', code))
    assert result.decision.reason == 'passback'


def test_background_loop_catches_up(store, fake_erp, clock, tmp_path):
    engine = engine_for(store, fake_erp, clock, sync_interval=0.05,
        max_backoff=0.1)
    engine.enrolment_token = 'TOKEN-1'
    box = Validator(store, tmp_path, clock=clock,
        online=lambda: engine.online, on_scan=engine.kick)
    try:
        fake_erp.off()
        engine.start()
        assert wait_for(lambda: engine.failures >= 3)
        fake_erp.on()
        assert wait_for(lambda: store.counts()['gates'] == 2
            and engine.online)
        fake_erp.off()
        results = scan_codes(box, 4000, 30)
        assert wait_for(lambda: engine.failures >= 2)
        assert store.outbox_size() == 30
        fake_erp.on()
        assert wait_for(lambda: store.outbox_size() == 0)
        assert all(fake_erp.upload_count(r.nonce) == 1 for r in results)
        assert wait_for(lambda: len(fake_erp.heartbeats) >= 1)
    finally:
        engine.stop()
    assert engine._thread is None


def test_5xx_and_garbage_are_transient(engine, fake_erp):
    fake_erp.fail_status = 503
    with pytest.raises(ErpUnavailable):
        engine.sync()
    fake_erp.fail_status = 422
    with pytest.raises(ErpRejected):
        engine.sync()
    fake_erp.fail_status = None
    engine.sync()


def test_bad_sync_answer_changes_nothing(engine, store, fake_erp):
    engine.sync()
    watermark = store.get_meta('watermark')
    fake_erp.change('gates', {'id': 99, 'code': 'BAD', 'direction':
        'sideways'})
    with pytest.raises(ErpUnavailable):
        engine.sync()
    assert store.get_meta('watermark') == watermark
    assert store.gate(code='BAD') == (None, None)


def test_card_photo_fetch(engine, store, fake_erp):
    engine.sync()
    url = store.card_photo_url(9)
    assert engine.client.fetch(url).startswith(b'\xff\xd8')
    with pytest.raises(ErpRejected):
        engine.client.fetch('http://elsewhere.example/x')


def test_clock_skew_alarm(engine, clock):
    "The ERP's server_time shows a box clock that drifted (issue 15)"
    engine.heartbeat(force=True)             # the fake ERP says NOW
    assert engine.status()['clock_skew_s'] == 0
    assert engine.status()['alarms'] == []
    clock.advance(seconds=20)                # the box runs 20 s fast
    engine.heartbeat(force=True)
    assert engine.status()['alarms'] == []
    clock.advance(minutes=5)
    engine.heartbeat(force=True)
    status = engine.status()
    assert status['alarms'] == ['clock_skew']
    assert status['clock_skew_s'] >= 300
    clock.now = NOW
    engine.heartbeat(force=True)
    assert engine.status()['alarms'] == []
