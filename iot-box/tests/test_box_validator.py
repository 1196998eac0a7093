"""The offline decision path: store → scenic_common.gate → usage + outbox."""
import json
import threading
from datetime import datetime, timedelta

from box_fakes import (
    GENERATIONS, ID_NUMBER, NOW, SHANGHAI, SLOT_END, SLOT_START,
    VAULT, full_answer, gate_hash, iso, sign)
from scenic_common.idnumber import make_resident_id
from scenic_common.ticketcode import SigningKey
from scenic_iotbox.validator import ScanRequest, Validator


def qr(code, gate='MAIN-IN', lane=1, **kwargs):
    return ScanRequest(gate=gate, lane=lane, medium='qr', data=code,
        **kwargs)


def outbox(store):
    return [json.loads(r['payload']) for r in store.query(
        'SELECT payload FROM outbox ORDER BY seq')]


def test_code_never_synced_is_admitted_offline(validator, synced_store):
    # ticket 5001 was sold after the last sync: only its key is known
    assert synced_store.query_one('SELECT COUNT(*) FROM tickets')[0] == 0
    result = validator.scan(qr(sign(5001)))
    assert result.decision.action == 'open', result.decision
    assert result.decision.persons == 1
    assert result.summary['id'] == 5001
    assert result.summary['ticket_type_code'] == 'ADULT'
    # durable: usage and outbox are written
    usage, _ = synced_store.usage('ticket', 5001)
    assert usage.entries == 1 and usage.inside
    [scan] = outbox(synced_store)
    assert scan['nonce'] == result.nonce
    assert scan['ticket'] == 5001 and scan['gate'] == 7
    assert scan['decision'] == 'open' and scan['reason'] == 'ok'
    assert scan['offline'] is True and scan['medium'] == 'qr'
    # second scan: already used, also uploaded
    again = validator.scan(qr(sign(5001), lane=2))
    assert again.decision.reason == 'already_used'
    assert [s['decision'] for s in outbox(synced_store)] == ['open', 'deny']


def test_unknown_key_and_forgery_refused(validator):
    other = SigningKey.generate(1)
    assert validator.scan(qr(sign(5002, key=other))).decision.reason == \
        'invalid_signature'
    assert validator.scan(qr(sign(5002, key=SigningKey.generate(7)))) \
        .decision.reason == 'unknown_key'
    assert validator.scan(qr('hello')).decision.reason == 'malformed'
    assert validator.scan(qr(sign(5002, area=2))).decision.reason == \
        'wrong_area'


def test_revocation_applies_once_synced(validator, synced_store, clock):
    code = sign(5003)
    answer = {'watermark': 'w#2', 'full': False, 'revoked': [
        {'ticket': 5003, 'at': iso(NOW)}]}
    synced_store.apply_sync(answer, clock())
    result = validator.scan(qr(code))
    assert result.decision.action == 'deny'
    assert result.decision.reason == 'revoked'
    assert synced_store.usage('ticket', 5003)[0].entries == 0


def test_key_rotation_seen_after_sync(validator, synced_store, clock):
    import base64
    new = SigningKey.generate(2)
    code = sign(5004, key=new)
    assert validator.scan(qr(code)).decision.reason == 'unknown_key'
    synced_store.apply_sync({'watermark': 'w#3', 'full': False, 'keys': [
        {'key_id': 2, 'public_key': base64.b64encode(
            new.public_bytes()).decode(), 'retired': False}]}, clock())
    assert validator.scan(qr(code)).decision.action == 'open'


def test_time_window_uses_the_rule(validator, clock):
    code = sign(5005)
    early = SLOT_START - timedelta(minutes=30)    # rule 3: 30 min early
    assert validator.scan(qr(code), now=early - timedelta(seconds=1)) \
        .decision.reason == 'not_yet_valid'
    assert validator.scan(qr(code), now=early).decision.action == 'open'
    assert validator.scan(qr(sign(5006)), now=SLOT_END).decision.reason \
        == 'expired'


def test_two_lanes_same_code_open_once(validator, synced_store):
    code = sign(5010)
    barrier = threading.Barrier(8)
    results = []

    def lane(n):
        barrier.wait()
        results.append(validator.scan(qr(code, lane=n % 4 + 1)))

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    actions = sorted(r.decision.action for r in results)
    assert actions == ['deny'] * 7 + ['open']
    assert {r.decision.reason for r in results
        if r.decision.action == 'deny'} == {'already_used'}
    assert synced_store.usage('ticket', 5010)[0].entries == 1
    assert len(outbox(synced_store)) == 8


def test_two_lanes_count_card_never_below_zero(validator, synced_store):
    # card 10 has 2 entries left; 6 lanes tap it at once
    barrier = threading.Barrier(6)
    results = []

    def tap(n):
        barrier.wait()
        results.append(validator.scan(ScanRequest(gate='MAIN-IN',
            lane=n % 4 + 1, medium='rfid', data='04C0FFEE01',
            direction='in')))

    threads = [threading.Thread(target=tap, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened = [r for r in results if r.decision.action == 'open']
    assert len(opened) == 2
    assert {r.decision.reason for r in results if not r.decision.opened} \
        == {'card_exhausted'}


def test_group_ticket_persons(validator, synced_store):
    result = validator.scan(qr(sign(5020, type_id=6, persons=10)))
    assert result.decision.action == 'open'
    assert result.decision.persons == 10
    load = synced_store.zone_load(1)
    assert load.inside == 1234 + 10


def test_capacity_counts_local_admissions(validator, synced_store, clock):
    synced_store.apply_sync({'watermark': 'w#4', 'full': False,
        'zones': [{'id': 1, 'code': 'MAIN', 'instant_max': 5600,
            'inside': 5589}]}, clock())
    assert validator.scan(qr(sign(5030, type_id=6, persons=10))) \
        .decision.action == 'open'      # 5599
    assert validator.scan(qr(sign(5031))).decision.action == 'open'  # 5600
    full = validator.scan(qr(sign(5032)))
    assert full.decision.reason == 'capacity_full'
    # exits still open
    assert validator.scan(qr(sign(5030, type_id=6, persons=10),
        gate='MAIN-OUT')).decision.action == 'open'


def test_exit_and_passback(validator, synced_store):
    code = sign(5040, type_id=7, entries=0)      # rule 4: exits counted
    out = validator.scan(qr(code, gate='MAIN-OUT'))
    assert out.decision.reason == 'passback'
    first = validator.scan(qr(code, image=b'A-face'))
    assert first.decision.action == 'open'
    assert validator.scan(qr(code, image=b'A-face')).decision.reason == \
        'passback'
    out = validator.scan(qr(code, gate='MAIN-OUT'))
    assert out.decision.action == 'open' and out.decision.direction == 'out'
    assert synced_store.zone_load(1).inside == 1234    # +1 -1


def test_wrong_gate_unknown_to_store(validator):
    result = validator.scan(qr(sign(5050), gate='NOPE'))
    assert result.decision.reason == 'wrong_gate'
    assert result.nonce is None


# --- cards -----------------------------------------------------------------

def rfid(uid, gate='MAIN-IN', **kwargs):
    return ScanRequest(gate=gate, lane=1, medium='rfid', data=uid, **kwargs)


def test_cards(validator, synced_store, clock):
    result = validator.scan(rfid('04:a1:b2:c3:d4'))
    assert result.decision.action == 'open'
    assert result.decision.card == 9
    assert result.bound_photo_url == (
        '/photos/card-9-' + validator.store.photo_token(9))
    assert validator.scan(rfid('04DEAD0001')).decision.reason == 'card_lost'
    assert validator.scan(rfid('FFFFFFFF')).decision.reason == \
        'unknown_card'
    # the card is suspended in the ERP: the next sync stops it
    synced_store.apply_sync({'watermark': 'w#5', 'full': False, 'cards': [
        {'uid': '04A1B2C3D4', 'card': 9, 'ticket_type': 12,
            'state': 'suspended'}]}, clock())
    assert validator.scan(rfid('04A1B2C3D4')).decision.reason == \
        'card_suspended'


def test_count_card_decrements_locally(validator, synced_store, clock):
    first = validator.scan(rfid('04C0FFEE01'))
    assert first.decision.action == 'open'
    assert first.summary['remaining'] == 1
    clock.advance(hours=1)
    out = validator.scan(rfid('04C0FFEE01', gate='MAIN-OUT'))
    assert out.decision.action == 'open'
    second = validator.scan(rfid('04C0FFEE01'))
    assert second.decision.action == 'open'
    assert second.summary['remaining'] == 0
    clock.advance(hours=1)
    validator.scan(rfid('04C0FFEE01', gate='MAIN-OUT'))
    third = validator.scan(rfid('04C0FFEE01'))
    assert third.decision.reason == 'card_exhausted'


# --- ID card as ticket --------------------------------------------------

def real_name_ticket(ticket_id, number, start=SLOT_START, end=SLOT_END,
        type_id=5, entries=1):
    return {'ticket': ticket_id,
        'holder_hash': gate_hash(number),
        'code': sign(ticket_id, type_id=type_id, entries=entries,
            valid_from=start, valid_until=end, holder=number),
        'valid_from': iso(start), 'valid_until': iso(end)}


def id_card(number, **kwargs):
    return ScanRequest(gate='MAIN-IN', lane=1, medium='id_card',
        data=number, **kwargs)


def test_id_card_as_ticket(validator, synced_store, clock):
    tomorrow = timedelta(days=1)
    other = make_resident_id('110105', datetime(1990, 1, 1).date(), 12)
    synced_store.apply_sync({'watermark': 'w#6', 'full': False, 'tickets': [
        real_name_ticket(6001, ID_NUMBER),
        real_name_ticket(6002, ID_NUMBER, SLOT_START + tomorrow,
            SLOT_END + tomorrow),
        real_name_ticket(6003, other)]}, clock())
    result = validator.scan(id_card(ID_NUMBER.lower()))
    assert result.decision.action == 'open'
    assert result.decision.ticket == 6001
    assert result.summary['real_name'] is True
    [scan] = outbox(synced_store)
    assert scan['medium'] == 'id_card' and scan['ticket'] == 6001
    # the same ID again today: its only ticket is used (tomorrow's is not
    # today's)
    again = validator.scan(id_card(ID_NUMBER))
    assert again.decision.reason == 'already_used'
    # an ID without a ticket, a number that is not an ID
    nobody = make_resident_id('110105', datetime(1980, 5, 5).date(), 3)
    assert validator.scan(id_card(nobody)).decision.reason == \
        'no_ticket_today'
    assert validator.scan(id_card('@@@')).decision.reason == 'malformed'
    # tomorrow, the second ticket
    clock.advance(days=1)
    assert validator.scan(id_card(ID_NUMBER)).decision.ticket == 6002


def test_id_card_picks_the_first_ticket_that_opens(validator, synced_store,
        clock):
    morning = (datetime(2026, 5, 1, 8, 0, tzinfo=SHANGHAI),
        datetime(2026, 5, 1, 9, 0, tzinfo=SHANGHAI))
    synced_store.apply_sync({'watermark': 'w#7', 'full': False, 'tickets': [
        real_name_ticket(6010, ID_NUMBER, *morning),     # expired at 10:00
        real_name_ticket(6011, ID_NUMBER)]}, clock())
    result = validator.scan(id_card(ID_NUMBER))
    assert result.decision.ticket == 6011 and result.decision.opened
    # with only expired ones: the first one's reason
    synced_store.apply_sync({'watermark': 'w#8', 'full': False,
        'revoked': [{'ticket': 6011}]}, clock())
    result = validator.scan(id_card(ID_NUMBER))
    assert result.decision.action == 'deny'
    assert result.decision.reason in ('expired', 'revoked')


def test_id_card_needs_enrolment(store, tmp_path, clock):
    store.apply_sync(full_answer(), clock())
    validator = Validator(store, tmp_path, clock=clock)
    result = validator.scan(id_card(ID_NUMBER))
    assert result.decision.reason == 'no_ticket_today'


# --- re-entry binding ---------------------------------------------------

def test_face_binding_first_entry_then_reentry(validator, synced_store,
        matcher, tmp_path):
    code = sign(7001, type_id=7, entries=0)
    first = validator.scan(qr(code, image=b'A-face-photo'))
    assert first.decision.action == 'open'
    assert first.decision.needs_binding
    assert first.binding['method'] == 'face'
    ref = first.binding['ref']
    assert first.bound_photo_url == f'/photos/{ref}'
    assert matcher.enrolled == [b'A-face-photo']
    files = synced_store.binding_files(ref)
    assert open(files['photo_path'], 'rb').read() == b'A-face-photo'
    validator.scan(qr(code, gate='MAIN-OUT'))
    # re-entry without an image: binding_required, photo offered to staff
    result = validator.scan(qr(code))
    assert result.decision.reason == 'binding_required'
    assert result.decision.binding_check == 'face'
    assert result.bound_photo_url == f'/photos/{ref}'
    # somebody else
    result = validator.scan(qr(code, image=b'B-face'))
    assert result.decision.reason == 'binding_mismatch'
    # the holder
    result = validator.scan(qr(code, image=b'A-other-angle'))
    assert result.decision.action == 'open', result.decision
    assert result.binding == {'method': 'face', 'ref': ref, 'score': 0.3}
    scans = outbox(synced_store)
    assert scans[0]['binding']['ref'] == ref
    assert scans[-1]['binding']['score'] == 0.3


def test_staff_confirmation_overrides(validator):
    code = sign(7002, type_id=7, entries=0)
    validator.scan(qr(code, image=b'A'))
    validator.scan(qr(code, gate='MAIN-OUT'))
    assert validator.scan(qr(code, binding_confirmed=False)) \
        .decision.reason == 'binding_mismatch'
    assert validator.scan(qr(code, binding_confirmed=True)) \
        .decision.action == 'open'


def test_failed_decision_keeps_no_binding_files(validator, tmp_path):
    code = sign(7003, type_id=7, entries=0, valid_from=SLOT_END,
        valid_until=SLOT_END + timedelta(hours=1))
    result = validator.scan(qr(code, image=b'A'))
    assert result.decision.reason == 'not_yet_valid'
    photos = tmp_path / 'photos'
    assert not photos.exists() or not list(photos.iterdir())


def test_id_card_binding(validator, synced_store):
    code = sign(7010, type_id=8, entries=3)
    first = validator.scan(qr(code, id_number=ID_NUMBER))
    assert first.decision.opened and first.decision.needs_binding
    # the reference is the gate hash under the current generation, never
    # a hash a look-up key could reproduce
    assert first.binding['ref'] == f'id:g1:{gate_hash(ID_NUMBER)}'
    assert VAULT.lookup_hash('resident_id', ID_NUMBER) not in \
        first.binding['ref']
    other = make_resident_id('110105', datetime(1990, 1, 1).date(), 12)
    assert validator.scan(qr(code, gate='MAIN-OUT')).decision.opened
    assert validator.scan(qr(code)).decision.reason == 'binding_required'
    assert validator.scan(qr(code, id_number=other)).decision.reason == \
        'binding_mismatch'
    assert validator.scan(qr(code, id_number=ID_NUMBER.lower())) \
        .decision.opened
    # A rotation: generation 2 becomes current, 1 stays live; the binding
    # made under 1 is still checked under 1.
    from scenic_common import protocol
    rotated = protocol.generation_answer(VAULT.gate_secret(), 1,
        [(2, 10), (1, 10)])
    synced_store.apply_sync({'watermark': 'w#r', 'full': False,
        'gate_generations': rotated}, NOW)
    assert validator.scan(qr(code, id_number=other)).decision.reason == \
        'binding_mismatch'
    ref = first.binding['ref']
    assert validator._id_ref(ID_NUMBER, under=ref) == ref
    assert validator._id_ref(ID_NUMBER).startswith('id:g2:')
    assert validator.scan(qr(code, id_number=ID_NUMBER)).decision.opened
    # once generation 1 is gone, its bindings cannot be checked: staff
    synced_store.apply_sync({'watermark': 'w#s', 'full': False,
        'gate_generations': rotated[:1]}, NOW)
    assert validator._id_ref(ID_NUMBER, under=ref) is None
    assert GENERATIONS[0]['generation'] == 1


def test_revoked_box_admits_nobody(validator, synced_store):
    synced_store.revoke_box()
    result = validator.scan(qr(sign(8000)))
    assert result.decision.reason == 'unknown_key'
    assert 'revoked' in result.decision.message
    assert validator.scan(rfid('04A1B2C3D4')).decision.reason == \
        'unknown_card'
    assert validator.scan(id_card(ID_NUMBER)).decision.reason == \
        'no_ticket_today'


def test_match_outcomes():
    from dataclasses import dataclass

    from scenic_iotbox.validator import _match_outcome

    @dataclass
    class MatchResult:           # the drivers' shape
        matched: bool
        score: float | None
        reason: str

    assert _match_outcome(True) == (True, None)
    assert _match_outcome((False, 0.8)) == (False, 0.8)
    assert _match_outcome(MatchResult(True, 0.31, 'ok')) == (True, 0.31)
    assert _match_outcome(MatchResult(False, 0.7, 'mismatch')) == (
        False, 0.7)
    # nothing compared (no face): staff must check, not a mismatch
    assert _match_outcome(MatchResult(False, None, 'no_face')) == (
        None, None)
    assert _match_outcome(object()) == (None, None)


def test_unusable_picture_asks_staff(validator, matcher):
    code = sign(7004, type_id=7, entries=0)
    validator.scan(qr(code, image=b'A'))
    validator.scan(qr(code, gate='MAIN-OUT'))
    matcher.match = lambda template, image: (False, None)
    result = validator.scan(qr(code, image=b'blurred'))
    assert result.decision.reason == 'binding_required'
    assert result.bound_photo_url


def partner_code_hash(code):
    import base64
    from scenic_common import partnercode
    generation = GENERATIONS[0]
    return partnercode.code_hash(base64.b64decode(generation['pepper']),
        code, generation['log2_n'])


def sync_partner_codes(store, clock, *codes):
    "The ERP sends partner codes as [(ticket, code, type, persons)]."
    store.apply_sync({'watermark': 'w#pc', 'full': False, 'partner_codes': [
        {'ticket': ticket, 'hash': partner_code_hash(code),
            'ticket_type': type_id, 'persons': persons, 'entries': 1,
            'valid_from': iso(SLOT_START), 'valid_until': iso(SLOT_END)}
        for ticket, code, type_id, persons in codes]}, clock())


def test_partner_code_admitted_like_a_signed_code(validator, synced_store,
        clock):
    "An OTA's own code: admitted once, then refused; the box holds no code"
    sync_partner_codes(synced_store, clock, (7001, 'MT-88776655', 5, 1),
        (7002, 'MTGROUP0001', 6, 10))
    assert 'MT-88776655' not in str(synced_store.query(
        'SELECT * FROM partner_codes'))
    result = validator.scan(qr('MT-88776655'))
    assert result.decision.action == 'open', result.decision
    assert result.summary['id'] == 7001
    assert result.summary['ticket_type_code'] == 'ADULT'
    [scan] = outbox(synced_store)
    assert scan['ticket'] == 7001 and scan['decision'] == 'open'
    assert 'MT-88776655' not in json.dumps(scan)
    again = validator.scan(qr('MT-88776655', lane=2))
    assert again.decision.reason == 'already_used'
    group = validator.scan(qr('MTGROUP0001'))
    assert group.decision.opened and group.decision.persons == 10


def test_partner_code_rules_and_unknown_strings(validator, synced_store,
        clock):
    sync_partner_codes(synced_store, clock, (7003, 'MT-11112222', 5, 1),
        (7004, 'MT-33334444', 5, 1))
    # an unknown string keeps the existing reason code
    assert validator.scan(qr('MT-99999999')).decision.reason == 'malformed'
    assert validator.scan(qr('mt-11112222')).decision.reason == 'malformed'
    # before its window (the rule admits 30 minutes early)
    early = SLOT_START - timedelta(minutes=31)
    assert validator.scan(qr('MT-11112222'), now=early).decision.reason \
        == 'not_yet_valid'
    assert validator.scan(qr('MT-11112222'), now=SLOT_END).decision.reason \
        == 'expired'
    # a refund revokes it on the next sync
    synced_store.apply_sync({'watermark': 'w#r', 'full': False,
        'revoked': [{'ticket': 7004, 'at': iso(NOW)}]}, clock())
    assert validator.scan(qr('MT-33334444')).decision.reason == 'revoked'
    assert validator.scan(qr('MT-11112222')).decision.opened


def test_partner_code_passback(validator, synced_store, clock):
    "A two-entry partner ticket inside the park cannot enter again"
    synced_store.apply_sync({'watermark': 'w#pb', 'full': False,
        'partner_codes': [{'ticket': 7005, 'hash': partner_code_hash(
            'MT-55556666'), 'ticket_type': 5, 'persons': 1, 'entries': 2,
            'valid_from': iso(SLOT_START), 'valid_until': iso(SLOT_END)}]},
        clock())
    assert validator.scan(qr('MT-55556666')).decision.opened
    assert validator.scan(qr('MT-55556666')).decision.reason == 'passback'


def test_id_card_opens_a_real_name_partner_ticket(validator, synced_store,
        clock):
    "A real-name ticket with a partner's code: the ID card works too"
    ticket = real_name_ticket(7010, ID_NUMBER)
    ticket['code'] = None
    synced_store.apply_sync({'watermark': 'w#id', 'full': False,
        'tickets': [ticket]}, clock())
    sync_partner_codes(synced_store, clock, (7010, 'MT-77778888', 5, 1))
    result = validator.scan(id_card(ID_NUMBER))
    assert result.decision.opened and result.decision.ticket == 7010
    # one ticket, whichever way it is shown
    assert validator.scan(qr('MT-77778888')).decision.reason == \
        'already_used'
