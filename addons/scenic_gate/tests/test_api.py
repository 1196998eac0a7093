"""The gate protocol end to end through trytond's WSGI application.

Each test builds a scenic area of its own, so that what one test syncs or
counts never meets another's.
"""
import base64
import datetime as dt
import hashlib
import hmac
import unittest
from concurrent.futures import ThreadPoolExecutor

from scenic_common import gate as engine
from scenic_common import protocol, ticketcode
from scenic_common.idnumber import RESIDENT_ID
from scenic_ticket.reservation import BookingError
from scenic_ticket.tests.tools import configure_pii_key

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from .tools import (
    SHANGHAI, age_area, area_time, build_area, fill_gate_hashes, issue_card,
    new_box, new_id, refund, scan, sell, slot_day)

PNG = (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00'
    b'\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89')


class GateAPITestCase(RouteTestCase):
    "Test the gate protocol"
    module = 'scenic_gate'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    # --- helpers -----------------------------------------------------------

    def url(self, path):
        return f'/{self.db_name}/scenic/gate/v1{path}'

    def committed(self, function, *args, **kwargs):
        "Run function in a transaction of its own and commit it."
        with Transaction().start(DB_NAME, 1) as transaction:
            result = function(*args, **kwargs)
            transaction.commit()
            return result

    def enrolled_box(self, area, name="Box"):
        box_id, token = self.committed(new_box, area, name)
        response = self.client().post(self.url('/enrol'),
            json={'token': token, 'name': name, 'hostname': 'gate-1'})
        self.assertEqual(response.status_code, 201, response.get_data())
        return {'Authorization':
            f"Box {response.json['box']}:{response.json['secret']}"}

    def sync(self, headers, since=None):
        response = self.client().get(self.url('/sync'), headers=headers,
            query_string={'since': since} if since else None)
        self.assertEqual(response.status_code, 200, response.get_data())
        return response.json

    def upload(self, headers, scans, status=200):
        response = self.client().post(self.url('/scans'),
            json={'scans': scans}, headers=headers)
        self.assertEqual(response.status_code, status, response.get_data())
        return response.json

    def assertError(self, response, status, code, field=None):
        self.assertEqual(response.status_code, status, response.get_data())
        error = response.json['error']
        self.assertEqual(error['code'], code)
        self.assertTrue(error['message'])
        if field is not None:
            self.assertEqual(error.get('field'), field)

    def read(self, function, *args):
        with Transaction().start(DB_NAME, 0, readonly=True):
            return function(*args)

    # --- enrolment ---------------------------------------------------------

    def test_enrolment(self):
        "A token enrols once; wrong tokens 401; a revoked box 409"
        area = self.committed(build_area)
        box_id, token = self.committed(new_box, area)
        response = self.client().post(self.url('/enrol'),
            json={'token': token, 'name': "Box", 'hostname': 'gate-7'})
        self.assertEqual(response.status_code, 201, response.get_data())
        data = response.json
        self.assertEqual(data['box'], box_id)
        self.assertEqual(data['area'], area.company)
        self.assertEqual(len(data['secret']), 43)
        # No key of the ERP: the area's gate-hash generations, each with
        # its scrypt parameters and pepper (PROTOCOL.md, "Threat model").
        self.assertNotIn('lookup_key', data)
        generation, = data['gate_generations']
        self.assertEqual((generation['generation'], generation['log2_n'],
                generation['r'], generation['p']), (1, 14, 8, 1))
        pepper = base64.b64decode(generation['pepper'])
        self.assertEqual(len(pepper), 32)

        def check_key():
            from scenic_ticket.vault import pii_vault
            vault = pii_vault()
            self.assertEqual(pepper, protocol.gate_pepper(
                    vault.gate_secret(), area.company, 1))
            # nothing that keys the ERP's look-up hashes
            self.assertNotIn(vault.lookup_key(), pepper)
            self.assertNotEqual(protocol.gate_pepper(
                    vault.gate_secret(), area.company + 1, 1), pepper)
            Box = Pool().get('scenic.gate.box')
            box = Box(box_id)
            self.assertEqual(box.state, 'enrolled')
            self.assertEqual(box.hostname, 'gate-7')
            self.assertIsNone(box.token_hash)
            self.assertNotEqual(box.secret_hash, data['secret'])
        self.read(check_key)

        # The token is spent; a wrong one is refused.
        for body in [{'token': token}, {'token': 'not-a-token'}]:
            self.assertError(self.client().post(self.url('/enrol'),
                    json=body), 401, 'unauthorized', 'token')
        self.assertError(self.client().post(self.url('/enrol'), json={}),
            422, 'invalid_request', 'token')

        headers = {'Authorization': f"Box {box_id}:{data['secret']}"}
        response = self.client().get(self.url('/sync'), headers=headers)
        self.assertEqual(response.status_code, 200)
        # The area had sold nothing: enrolment gave it its signing key, so
        # that the box verifies the first codes sold even while cut off.
        self.assertEqual(
            [k['retired'] for k in response.json['keys']], [False])
        for wrong in [f"Box {box_id}:wrong", f"Bearer {data['secret']}",
                "Box x:y", ""]:
            self.assertError(self.client().get(self.url('/sync'),
                    headers={'Authorization': wrong}), 401, 'unauthorized')

        # An expired token is refused like a wrong one.
        other_id, other_token = self.committed(new_box, area, "Other")

        def expire():
            Box = Pool().get('scenic.gate.box')
            Box.write([Box(other_id)], {'token_expires':
                    dt.datetime.now() - dt.timedelta(seconds=1)})
        self.committed(expire)
        self.assertError(self.client().post(self.url('/enrol'),
                json={'token': other_token}), 401, 'unauthorized')

        # A revoked box is told so, on every call and on enrolment.
        _, pending = self.committed(new_box, area, "Pending")

        def revoke():
            Box = Pool().get('scenic.gate.box')
            Box.revoke(Box.search([('company', '=', area.company),
                        ('name', 'in', ["Box", "Pending"])]))
        self.committed(revoke)
        for path, method in [('/sync', 'get'), ('/heartbeat', 'post'),
                ('/scans', 'post')]:
            self.assertError(getattr(self.client(), method)(
                    self.url(path), headers=headers, json={}),
                409, 'revoked')
        self.assertError(self.client().post(self.url('/enrol'),
                json={'token': pending}), 409, 'revoked')

    # --- sync --------------------------------------------------------------

    def test_sync_partner_codes(self):
        """Tickets with a partner's code reach boxes as the code's gate
        hash once the cron derived it; a refund revokes them"""
        from scenic_common import partnercode
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        headers = self.enrolled_box(area)

        def give_code(ticket_id, code):
            # what scenic_group does when a partner pays with its codes
            table = Pool().get('scenic.ticket').__table__()
            Transaction().connection.cursor().execute(*table.update(
                    [table.code, table.key_id, table.partner_code],
                    [None, None, code], where=table.id == ticket_id))

        def fill_codes():
            return Pool().get('scenic.gate.code_hash').fill(
                now=area_time(area), companies=[area.company])
        coded, = self.committed(sell, area)
        signed, = self.committed(sell, area)
        self.committed(give_code, coded, 'MT-SYNC-0001')
        with self.assertRaises(backend.DatabaseIntegrityError):
            self.committed(give_code, signed, 'MT-SYNC-0001')
        self.committed(fill_gate_hashes, area)

        before = self.sync(headers)
        self.assertEqual(before['partner_codes'], [])  # not derived yet
        self.assertEqual(self.committed(fill_codes), 1)
        self.assertEqual(self.committed(fill_codes), 0)
        full = self.sync(headers)
        generation = full['gate_generations'][0]
        synced, = full['partner_codes']
        self.assertEqual(synced['ticket'], coded)
        self.assertEqual(synced['hash'], partnercode.code_hash(
                base64.b64decode(generation['pepper']), 'MT-SYNC-0001',
                generation['log2_n']))
        self.assertEqual((synced['ticket_type'], synced['persons'],
                synced['entries']), (area.adult, 1, 1))
        self.assertTrue(synced['valid_from'].endswith('+08:00'))
        self.assertNotIn('MT-SYNC-0001', str(full))
        # its holder's ID card finds it, without a signed code
        codes = {t['ticket']: t['code'] for t in full['tickets']}
        self.assertIsNone(codes[coded])
        self.assertTrue(codes[signed].startswith('SC1:'))

        later, = self.committed(sell, area)
        self.committed(give_code, later, 'MT-SYNC-0002')
        self.committed(fill_codes)
        self.committed(refund, coded)
        # (an incremental answer may repeat what changed just before the
        # watermark: boxes upsert)
        changed = self.sync(headers, full['watermark'])
        self.assertFalse(changed['full'])
        self.assertIn(later,
            [c['ticket'] for c in changed['partner_codes']])
        self.assertEqual([r['ticket'] for r in changed['revoked']],
            [coded])
        self.assertEqual([c['ticket'] for c in self.sync(headers)[
                    'partner_codes']], [later])

    def test_sync_full_then_incremental(self):
        "A full snapshot, then only what changed since its watermark"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # tickets of today and tomorrow
        headers = self.enrolled_box(area)
        kept, = self.committed(sell, area)
        refunded, = self.committed(sell, area)
        card = self.committed(issue_card, area, 'count', remaining=10)
        lost = self.committed(issue_card, area)
        self.committed(fill_gate_hashes)
        self.committed(age_area, area.company)

        full = self.sync(headers)
        self.assertTrue(full['full'])
        self.assertEqual(full['area'],
            {'id': area.company, 'timezone': 'Asia/Shanghai'})
        self.assertEqual(len(full['keys']), 1)
        self.assertFalse(full['keys'][0]['retired'])
        self.assertEqual(full['revoked'], [])
        types = {t['code'].split('-')[0]: t for t in full['ticket_types']}
        self.assertEqual(types['ADULT']['zones'], [area.zone])
        self.assertEqual(types['ADULT']['entries'], 1)
        self.assertEqual(types['MULTI']['entries'], 3)
        self.assertEqual(types['ANNUAL']['entries'], 0)
        self.assertEqual(types['ANNUAL']['binding'], 'face')
        self.assertEqual(types['GROUP5']['persons'], 5)
        rule, = full['rules']  # the default made with the first gate
        self.assertTrue(rule['default'])
        self.assertEqual({t['rule'] for t in types.values()}, {rule['id']})
        self.assertEqual(
            {z['code']: (z['instant_max'], z['inside'])
                for z in full['zones']},
            {'MAIN': (5600, 0), 'MUSEUM': (300, 0)})
        gates = {g['code']: g for g in full['gates']}
        self.assertEqual(gates['MAIN-IN']['direction'], 'in')
        self.assertEqual(gates['MAIN-IN']['lanes'], 4)
        self.assertTrue(gates['MAIN-IN']['active'])
        self.assertEqual({c['card'] for c in full['cards']},
            {card.id, lost.id})
        synced = {c['card']: c for c in full['cards']}[card.id]
        self.assertEqual(synced['uid'], card.number)
        self.assertEqual(synced['state'], 'active')
        self.assertEqual(synced['remaining'], 10)
        # boxes never use a card's holder hash: it is not sent
        self.assertNotIn('holder_hash', synced)
        self.assertTrue(synced['valid_until'].endswith('+08:00'))
        self.assertEqual(sorted(t['ticket'] for t in full['tickets']),
            [kept, refunded])
        for ticket in full['tickets']:
            self.assertEqual(len(ticket['holder_hash']), 64)
            self.assertTrue(ticket['code'].startswith('SC1:'))
        self.assertEqual(full['usage'], [])

        # Nothing changed: nothing comes.
        same = self.sync(headers, full['watermark'])
        self.assertFalse(same['full'])
        for name in ['keys', 'revoked', 'ticket_types', 'rules', 'zones',
                'gates', 'cards', 'tickets', 'usage']:
            self.assertEqual(same[name], [], name)

        # A refund, a replaced card, a lost one, a closed gate, a new sale.
        self.committed(refund, refunded)

        def change_cards():
            Card = Pool().get('scenic.card')
            new = Card(card.id).replace_with('04FFEEDDCC', 'damaged')
            Card.report_lost([Card(lost.id)])
            Gate = Pool().get('scenic.gate')
            Gate.write([Gate(area.gate_museum)], {'active': False})
            return new.id
        new_card = self.committed(change_cards)
        sold, = self.committed(sell, area)
        self.committed(fill_gate_hashes)

        changed = self.sync(headers, same['watermark'])
        self.assertFalse(changed['full'])
        self.assertEqual([r['ticket'] for r in changed['revoked']],
            [refunded])
        cards = {c['card']: c for c in changed['cards']}
        self.assertEqual(set(cards), {card.id, new_card, lost.id})
        self.assertEqual(cards[card.id]['state'], 'replaced')
        self.assertEqual(cards[lost.id]['state'], 'lost')
        self.assertEqual(cards[new_card]['state'], 'active')
        self.assertEqual(cards[new_card]['uid'], '04FFEEDDCC')
        self.assertEqual(cards[new_card]['remaining'], 10)
        self.assertEqual([g['code'] for g in changed['gates']], ['MUSEUM'])
        self.assertFalse(changed['gates'][0]['active'])
        self.assertEqual([t['ticket'] for t in changed['tickets']], [sold])
        for name in ['keys', 'ticket_types', 'rules', 'zones', 'usage']:
            self.assertEqual(changed[name], [], name)

        # Unknown, foreign and stale watermarks give a full snapshot.
        old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
        for since in ['garbage', full['watermark'].split('#')[0] + '#999',
                f"{old.isoformat()}#1.1",
                full['watermark'].split('#')[0] + '#1.2']:
            self.assertTrue(self.sync(headers, since)['full'], since)
        # The old UID is refused as replaced at the gate from now on.
        state = engine.CardInfo(uid=card.number, id=card.id,
            ticket_type=area.count, state=cards[card.id]['state'])
        decision = engine.decide_card(state, engine.TicketTypeInfo(
                id=area.count, entries=10), engine.GateInfo(id=1),
            now=dt.datetime.now(SHANGHAI))
        self.assertEqual(decision.reason, 'card_replaced')

    # --- scans -------------------------------------------------------------

    def test_scan_upload_idempotent(self):
        "A batch is stored once; resent, it is all duplicates"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # the zones' inside is today's
        headers = self.enrolled_box(area)
        first, second = self.committed(sell, area, quantity=2)
        group, = self.committed(sell, area, 'GROUP5', persons=5)
        card = self.committed(issue_card, area, 'count', remaining=3)
        now = area_time(area)
        scans = [
            scan(area.gate_in, first, at=now - dt.timedelta(minutes=9)),
            scan(area.gate_in, group, persons=5,
                at=now - dt.timedelta(minutes=8)),
            scan(area.gate_in, card=card.id,
                at=now - dt.timedelta(minutes=7),
                binding={'method': 'face', 'ref': 'face-7', 'score': 0.41}),
            scan(area.gate_in, second, decision='deny',
                reason='not_yet_valid', at=now - dt.timedelta(minutes=6)),
            scan(area.gate_out, first, direction='out',
                at=now - dt.timedelta(minutes=5)),
            ]
        scans.append(dict(scans[0]))  # the same scan twice in a batch
        answer = self.upload(headers, scans)
        self.assertEqual(answer['accepted'], [s['nonce'] for s in scans[:5]])
        self.assertEqual(answer['duplicates'], [scans[0]['nonce']])
        self.assertEqual(answer['conflicts'], [])

        again = self.upload(headers, scans)
        self.assertEqual(again['accepted'], [])
        self.assertEqual(sorted(again['duplicates']),
            sorted(s['nonce'] for s in scans))

        def check():
            pool = Pool()
            Scan = pool.get('scenic.gate.scan')
            Usage = pool.get('scenic.ticket.usage')
            Zone = pool.get('scenic.zone')
            Ticket = pool.get('scenic.ticket')
            Card = pool.get('scenic.card')
            Order = pool.get('scenic.order')
            stored = Scan.search([('company', '=', area.company)])
            self.assertEqual(len(stored), 5)
            self.assertEqual(
                {s.decision for s in stored}, {'open', 'deny'})
            usage, = Usage.search([('ticket', '=', first)])
            self.assertEqual((usage.entries, usage.exits, usage.inside),
                (1, 1, False))
            self.assertEqual(Usage.search([('ticket', '=', second)]), [])
            card_usage, = Usage.search([('card', '=', card.id)])
            self.assertEqual(card_usage.entries, 1)
            self.assertEqual((card_usage.binding_method,
                    card_usage.binding_ref), ('face', 'face-7'))
            bound, = Scan.search([('card', '=', card.id)])
            self.assertAlmostEqual(bound.binding_score, 0.41)
            self.assertEqual(Card(card.id).remaining, 2)
            # 1 + 5 + 1 in, 1 out (the default rule counts exits)
            self.assertEqual(Zone(area.zone).inside, 6)
            self.assertEqual(Ticket(first).state, 'used')
            self.assertEqual(Ticket(second).state, 'valid')
            # first and second are one order, half admitted
            self.assertEqual(Order(Ticket(first).order.id).state,
                'partly_used')
            self.assertEqual(Order(Ticket(group).order.id).state, 'used')
            return Ticket(first).order.reference
        reference = self.read(check)
        # A used ticket is not refunded any more, in the back office nor
        # through the booking API.
        with self.assertRaises(BookingError) as refused:
            self.committed(refund, first)
        self.assertEqual(refused.exception.code, 'not_cancellable')

        def api_key():
            Channel = Pool().get('scenic.channel')
            return Channel(area.channel).set_api_key()
        key = self.committed(api_key)
        response = self.client().post(
            f'/{self.db_name}/scenic/v1/orders/{reference}/cancel',
            headers={'Authorization': f'Bearer {key}'})
        self.assertError(response, 409, 'not_cancellable')
        self.assertIn('used', response.json['error']['message'])

        sync = self.sync(headers)
        usage = {(u['ticket'], u['card']): u for u in sync['usage']}
        self.assertEqual(usage[(first, None)]['entries'], 1)
        self.assertFalse(usage[(first, None)]['inside'])
        self.assertTrue(usage[(group, None)]['inside'])
        self.assertEqual(usage[(None, card.id)]['entries'], 1)
        self.assertEqual(usage[(None, card.id)]['binding'], 'face-7')
        self.assertEqual(
            {z['code']: z['inside'] for z in sync['zones']}['MAIN'], 6)
        self.assertEqual({c['card']: c['remaining'] for c in sync['cards']},
            {card.id: 2})

    def test_scan_conflicts(self):
        "Two boxes cut off admit one single-entry ticket: both kept, 1 flagged"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # the zones' inside is today's
        box_a = self.enrolled_box(area, "A")
        box_b = self.enrolled_box(area, "B")
        ticket, = self.committed(sell, area)
        revoked, = self.committed(sell, area)
        card = self.committed(issue_card, area)
        now = area_time(area)
        first = scan(area.gate_in, ticket, at=now - dt.timedelta(minutes=3),
            offline=True)
        second = scan(area.gate_in, ticket, at=now - dt.timedelta(minutes=2),
            offline=True)
        self.assertEqual(self.upload(box_a, [first])['conflicts'], [])
        answer = self.upload(box_b, [second])
        self.assertEqual(answer['accepted'], [second['nonce']])
        self.assertEqual(answer['conflicts'],
            [{'nonce': second['nonce'], 'reason': 'already_used'}])
        # Resent, the conflict is told again, nothing is counted twice.
        again = self.upload(box_b, [second])
        self.assertEqual(again['duplicates'], [second['nonce']])
        self.assertEqual(again['conflicts'],
            [{'nonce': second['nonce'], 'reason': 'already_used'}])

        # Admitted after its refund, or on a card reported lost.
        self.committed(refund, revoked, now=now - dt.timedelta(minutes=1))

        def lose():
            Card = Pool().get('scenic.card')
            Card.report_lost([Card(card.id)])
            Card.write([Card(card.id)], {'state_changed_at':
                    (now - dt.timedelta(minutes=1)).astimezone(
                        dt.timezone.utc).replace(tzinfo=None)})
        self.committed(lose)
        later = now + dt.timedelta(seconds=1)
        late_scans = [
            scan(area.gate_in, revoked, at=later),
            scan(area.gate_in, card=card.id, at=later),
            scan(area.gate_in, 999999999, at=later),
            ]
        answer = self.upload(box_a, late_scans)
        self.assertEqual(len(answer['accepted']), 3)
        self.assertEqual([c['reason'] for c in answer['conflicts']],
            ['revoked', 'card_lost', 'unknown_ticket'])

        def check():
            pool = Pool()
            Scan = pool.get('scenic.gate.scan')
            Usage = pool.get('scenic.ticket.usage')
            Zone = pool.get('scenic.zone')
            scans = Scan.search([('ticket', '=', ticket)],
                order=[('time', 'ASC')])
            self.assertEqual([s.conflict for s in scans], [False, True])
            self.assertEqual(scans[1].conflict_reason, 'already_used')
            self.assertTrue(scans[1].conflict_note)
            self.assertEqual({s.box.name for s in scans}, {"A", "B"})
            usage, = Usage.search([('ticket', '=', ticket)])
            self.assertEqual(usage.entries, 2)  # both went through
            unknown, = Scan.search([('nonce', '=', late_scans[2]['nonce'])])
            self.assertIsNone(unknown.ticket)
            # every admitted person is inside, conflict or not
            self.assertEqual(Zone(area.zone).inside, 4)
        self.read(check)

        # Admitted offline before its refund, uploaded after it: the refund
        # is flagged for review (issue 15 item 10).
        entered, = self.committed(sell, area)
        offline_entry = scan(area.gate_in, entered,
            at=now - dt.timedelta(minutes=2), offline=True)
        self.committed(refund, entered, now=now - dt.timedelta(minutes=1))
        answer = self.upload(box_b, [offline_entry])
        self.assertEqual(answer['accepted'], [offline_entry['nonce']])
        self.assertEqual(answer['conflicts'], [{
                    'nonce': offline_entry['nonce'],
                    'reason': 'refunded_after_entry'}])

    def test_scan_refusals(self):
        "Bad batches are refused whole, naming the field"
        area = self.committed(build_area)
        headers = self.enrolled_box(area)
        other = self.committed(build_area)
        good = scan(area.gate_in, None, decision='deny', reason='malformed')
        cases = [
            ({'scans': 'x'}, 'scans'),
            ({'scans': [good] * 1001}, 'scans'),
            ({'scans': [dict(good, at='yesterday')]}, 'scans[0].at'),
            ({'scans': [dict(good, at='2026-01-01T10:00:00')]},
                'scans[0].at'),
            ({'scans': [good, dict(good, nonce=None)]}, 'scans[1].nonce'),
            ({'scans': [dict(good, medium='nfc')]}, 'scans[0].medium'),
            ({'scans': [dict(good, direction='up')]}, 'scans[0].direction'),
            ({'scans': [dict(good, gate=other.gate_in)]}, 'scans[0].gate'),
            ]
        for body, field in cases:
            response = self.client().post(self.url('/scans'), json=body,
                headers=headers)
            self.assertError(response, 422, 'invalid_request', field)
        self.assertEqual(self.upload(headers, [good])['accepted'],
            [good['nonce']])

    # --- heartbeat ---------------------------------------------------------

    def test_heartbeat(self):
        "A heartbeat shows the box online; three missed show it offline"
        area = self.committed(build_area)
        headers = self.enrolled_box(area)
        box_id = int(headers['Authorization'].split()[1].split(':')[0])
        response = self.client().post(self.url('/heartbeat'), json={
                'at': dt.datetime.now(SHANGHAI).isoformat(),
                # a fraction, as the box sends it
                'version': '0.1.0', 'outbox': 12, 'sync_lag_s': 4.25,
                'devices': [
                    {'kind': 'turnstile', 'name': 'lane-1', 'ok': True,
                        'errors': 0},
                    {'kind': 'qr_reader', 'name': 'lane-1', 'ok': True,
                        'errors': 2},
                    ]}, headers=headers)
        self.assertEqual(response.status_code, 200, response.get_data())
        self.assertTrue(response.json['server_time'].endswith('+08:00'))

        def state():
            Box = Pool().get('scenic.gate.box')
            box = Box(box_id)
            return (box.online, box.alarm, box.version, box.outbox,
                box.sync_lag, box.errors,
                sorted((d.kind, d.ok) for d in box.devices))
        self.assertEqual(self.read(state), (True, None, '0.1.0', 12, 4, 2,
                [('qr_reader', True), ('turnstile', True)]))

        # A failing device raises the alarm.
        self.client().post(self.url('/heartbeat'), json={
                'version': '0.1.0', 'outbox': 0, 'sync_lag_s': 0,
                'devices': [{'kind': 'turnstile', 'name': 'lane-1',
                        'ok': False, 'errors': 1}]}, headers=headers)
        self.assertEqual(self.read(state)[:2], (True, 'device'))

        def silence(seconds):
            Box = Pool().get('scenic.gate.box')
            Box.write([Box(box_id)], {'last_heartbeat':
                    dt.datetime.now() - dt.timedelta(seconds=seconds)})
        self.committed(silence, 2 * 60 + 50)
        self.assertTrue(self.read(state)[0])
        self.committed(silence, 3 * 60 + 1)
        self.assertEqual(self.read(state)[:2], (False, 'offline'))

        def offline_boxes():
            Box = Pool().get('scenic.gate.box')
            return [b.id for b in Box.search([('online', '=', False),
                        ('company', '=', area.company)])]
        self.assertEqual(self.read(offline_boxes), [box_id])

        self.assertError(self.client().post(self.url('/heartbeat'),
                json={'devices': [{'kind': 'toaster', 'name': 'x'}]},
                headers=headers), 422, 'invalid_request', 'devices[0].kind')
        self.assertError(self.client().post(self.url('/heartbeat'),
                json={'sync_lag_s': -0.5}, headers=headers),
            422, 'invalid_request', 'sync_lag_s')
        # bounded before it becomes an integer (issue 15)
        for raw, field in [(b'{"outbox": 1e999999999}', 'outbox'),
                (b'{"sync_lag_s": 4294967296}', 'sync_lag_s'),
                (b'{"devices": [{"kind": "turnstile", "name": "t", '
                    b'"errors": 99999999999}]}', 'devices[0].errors')]:
            self.assertError(self.client().post(self.url('/heartbeat'),
                    data=raw, content_type='application/json',
                    headers=headers), 422, 'invalid_request', field)

    def test_kiosk_printer_health(self):
        "A kiosk's box reports its printer's paper and last error"
        area = self.committed(build_area)
        headers = self.enrolled_box(area)
        box_id = int(headers['Authorization'].split()[1].split(':')[0])

        def beat(**printer):
            return self.client().post(self.url('/heartbeat'), json={
                    'devices': [dict({'kind': 'printer', 'name': 'kiosk',
                                'ok': True, 'errors': 0}, **printer),
                        {'kind': 'id_reader', 'name': 'kiosk', 'ok': True,
                            'errors': 0}]}, headers=headers)

        def devices():
            Box = Pool().get('scenic.gate.box')
            box = Box(box_id)
            return box.alarm, sorted((d.kind, d.ok, d.paper, d.last_error)
                for d in box.devices)
        self.assertEqual(beat(paper='low').status_code, 200)
        self.assertEqual(self.read(devices), (None, [
                    ('id_reader', True, None, None),
                    ('printer', True, 'low', None)]))
        beat(paper='out', ok=False, errors=1,
            last_error='The printer is out of paper.')
        self.assertEqual(self.read(devices), ('device', [
                    ('id_reader', True, None, None),
                    ('printer', False, 'out',
                        'The printer is out of paper.')]))
        # Paper back: the last error stays until another replaces it.
        beat(paper='ok')
        self.assertEqual(self.read(devices)[1][1],
            ('printer', True, 'ok', 'The printer is out of paper.'))
        self.assertError(beat(paper='plenty'), 422, 'invalid_request',
            'devices[0].paper')
        self.assertError(beat(last_error='x' * 201), 422,
            'invalid_request', 'devices[0].last_error')

    # --- photos ------------------------------------------------------------

    def test_binding_photo(self):
        "Binding photos come on demand to the boxes of the card's area"
        area = self.committed(build_area)
        headers = self.enrolled_box(area)
        card = self.committed(issue_card, area, binding_method='photo',
            binding_photo=PNG)
        other = self.committed(build_area)
        other_headers = self.enrolled_box(other)
        synced, = [c for c in self.sync(headers)['cards']
            if c['card'] == card.id]
        url = synced['photo_url']
        self.assertTrue(url.startswith(self.url('/photos/')))
        response = self.client().get(url, headers=headers)
        self.assertEqual(response.status_code, 200,
            (url, response.get_data()))
        self.assertEqual(response.headers['Content-Type'], 'image/png')
        self.assertEqual(response.get_data(), PNG)
        self.assertError(self.client().get(url, headers=other_headers),
            404, 'not_found')
        self.assertError(self.client().get(url), 401, 'unauthorized')
        self.assertError(self.client().get(url[:-3] + 'zzz',
                headers=headers), 404, 'not_found')
        # the whole token, not a prefix of it (issue 15)
        for cut in (1, 8, 15):
            self.assertError(self.client().get(url[:-16 + cut],
                    headers=headers), 404, 'not_found')

    # --- codes -------------------------------------------------------------

    def test_retired_key_carries_its_revocation(self):
        "A retired key reaches boxes with its own signed revocation"
        area = self.committed(build_area)
        headers = self.enrolled_box(area)

        def rotate_and_retire():
            pool = Pool()
            SigningKey = pool.get('scenic.signing_key')
            Company = pool.get('company.company')
            SigningKey.rotate([Company(area.company)])
            SigningKey.retire(SigningKey.search([('state', '=', 'verify')]))
        self.committed(rotate_and_retire)
        keys = {k['key_id']: k for k in self.sync(headers)['keys']}
        self.assertEqual(len(keys), 2)
        keyring = ticketcode.Keyring()
        for key in keys.values():
            keyring.add(key['key_id'], base64.b64decode(key['public_key']))
        retired, = [k for k in keys.values() if k['retired']]
        active, = [k for k in keys.values() if not k['retired']]
        self.assertNotIn('revocation', active)
        self.assertTrue(keyring.revocation_ok(retired['key_id'],
                base64.b64decode(retired['revocation'])))
        self.assertFalse(keyring.revocation_ok(active['key_id'],
                base64.b64decode(retired['revocation'])))

    def test_gate_hashes_stored_then_synced(self):
        """Gate hashes are derived by the cron and only read by the sync;
        a rotation prepares the next generation, then a full sync"""
        from unittest import mock

        from trytond import config
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # tickets of today and tomorrow
        headers = self.enrolled_box(area)
        ticket, = self.committed(sell, area)

        def holder():
            from scenic_ticket.vault import pii_vault
            Ticket = Pool().get('scenic.ticket')
            visitor = Ticket(ticket).visitor
            return (visitor.id_type, pii_vault().decrypt(
                    visitor.id_encrypted))
        id_type, number = self.read(holder)

        def expected(generation):
            pepper = base64.b64decode(generation['pepper'])
            return protocol.gate_hash(pepper, id_type, number,
                generation['log2_n'])

        # The sync never derives: with scrypt out of reach it still answers,
        # without the ticket whose hash is not stored yet.
        with mock.patch.object(protocol, 'gate_hash',
                side_effect=AssertionError('derived in the sync')):
            first = self.sync(headers)
        self.assertEqual(first['tickets'], [])
        self.assertEqual(self.committed(fill_gate_hashes, area), 1)
        self.assertEqual(self.committed(fill_gate_hashes, area), 0)
        with mock.patch.object(protocol, 'gate_hash',
                side_effect=AssertionError('derived in the sync')):
            later = self.sync(headers, first['watermark'])
        self.assertFalse(later['full'])
        synced, = later['tickets']
        generation, = later['gate_generations']
        self.assertEqual(synced['ticket'], ticket)
        self.assertEqual(synced['holder_hash'], expected(generation))

        # A corrected ID number: its hash goes, the cron derives the new
        # one and the next sync sends the ticket with it.
        corrected = new_id()

        def correct():
            Ticket = Pool().get('scenic.ticket')
            Visitor = Pool().get('scenic.visitor')
            Visitor.write([Ticket(ticket).visitor], {'id_number': corrected})
            return Pool().get('scenic.gate.hash').search(
                [('company', '=', area.company)], count=True)
        self.assertEqual(self.committed(correct), 0)
        self.assertEqual(self.committed(fill_gate_hashes, area), 1)
        id_type, number = self.read(holder)
        self.assertEqual(number, corrected)
        fixed, = self.sync(headers, later['watermark'])['tickets']
        self.assertEqual(fixed['holder_hash'], expected(generation))

        # Rotation: the next generation is derived first, not sent yet.
        section = 'scenic_gate'
        if not config.has_section(section):
            config.add_section(section)
        saved = {k: config.get(section, k, default=None)
            for k in ['gate_generations', 'gate_generation_next']}
        try:
            config.set(section, 'gate_generation_next', '2:12')
            self.assertEqual(self.committed(fill_gate_hashes, area), 1)
            same = self.sync(headers, later['watermark'])
            self.assertFalse(same['full'])
            self.assertEqual(
                [g['generation'] for g in same['gate_generations']], [1])
            # then it becomes current: a full snapshot with the new hashes
            # and both peppers (the old one checks bindings made under it)
            config.set(section, 'gate_generations', '2:12, 1')
            config.set(section, 'gate_generation_next', '')
            rotated = self.sync(headers, same['watermark'])
            self.assertTrue(rotated['full'])
            new, old = rotated['gate_generations']
            self.assertEqual((new['generation'], new['log2_n'],
                    old['generation']), (2, 12, 1))
            self.assertNotEqual(new['pepper'], old['pepper'])
            synced, = rotated['tickets']
            self.assertEqual(synced['holder_hash'], expected(new))
            self.assertTrue(rotated['watermark'].endswith('#1.2'))

            def purge():
                GateHash = Pool().get('scenic.gate.hash')
                GateHash.purge()
                return sorted(h.generation for h in GateHash.search([]))
            self.assertEqual(self.committed(purge), [2])
            # a malformed configuration is refused with its own message
            config.set(section, 'gate_generations', '2, 2')
            with Transaction().start(DB_NAME, 0, readonly=True):
                from scenic_gate.exceptions import GateConfigurationError
                from scenic_gate.gatehash import live_generations
                with self.assertRaises(GateConfigurationError):
                    live_generations()
        finally:
            for key, value in saved.items():
                config.set(section, key, value or '')

    def test_synced_codes_verify(self):
        "The synced keys verify the synced codes, and revocations tell"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # tickets of today and tomorrow
        headers = self.enrolled_box(area)
        ticket, = self.committed(sell, area)
        self.committed(fill_gate_hashes)
        data = self.sync(headers)
        keyring = ticketcode.Keyring()
        for key in data['keys']:
            keyring.add(key['key_id'], base64.b64decode(key['public_key']),
                retired=key['retired'])
        code, = [t['code'] for t in data['tickets']
            if t['ticket'] == ticket]
        now = area_time(area)
        self.assertEqual(ticketcode.verify(code, keyring, now=now,
                area_id=area.company).reason, 'ok')
        self.committed(refund, ticket)
        revoked = {r['ticket'] for r in self.sync(
                headers, data['watermark'])['revoked']}
        self.assertEqual(ticketcode.verify(code, keyring, now=now,
                revoked=revoked, area_id=area.company).reason, 'revoked')

    # --- concurrency (PostgreSQL) ------------------------------------------

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_uploads(self):
        "Boxes racing on one ticket: every scan kept, one admission flagged"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))  # the zones' inside is today's
        boxes = [self.enrolled_box(area, f"Box {i}") for i in range(4)]
        tickets = [self.committed(sell, area)[0] for _ in range(5)]
        now = area_time(area)
        jobs = [(boxes[n % 4], [scan(area.gate_in, ticket,
                        at=now - dt.timedelta(seconds=n), offline=True)])
            for ticket in tickets for n in range(2)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda job: self.upload(*job), jobs))
        self.assertEqual(sum(len(a['accepted']) for a in answers), 10)
        conflicts = [c['reason'] for a in answers for c in a['conflicts']]
        self.assertEqual(conflicts, ['already_used'] * 5)

        # One batch sent four times at once is stored once.
        batch = [scan(area.gate_out, ticket, direction='out',
                at=now + dt.timedelta(minutes=1))
            for ticket in tickets]
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(
                    lambda headers: self.upload(headers, batch), boxes))
        self.assertEqual(sorted(len(a['accepted']) for a in answers),
            [0, 0, 0, 5])

        def check():
            pool = Pool()
            Scan = pool.get('scenic.gate.scan')
            Usage = pool.get('scenic.ticket.usage')
            Zone = pool.get('scenic.zone')
            self.assertEqual(Scan.search([('company', '=', area.company)],
                    count=True), 15)
            self.assertEqual(
                [(u.entries, u.exits, u.inside) for u in Usage.search(
                        [('ticket', 'in', tickets)])], [(2, 1, False)] * 5,
                [(u.last_entry, u.last_exit) for u in Usage.search(
                        [('ticket', 'in', tickets)])])
            self.assertEqual(Zone(area.zone).inside, 5)
        self.read(check)
