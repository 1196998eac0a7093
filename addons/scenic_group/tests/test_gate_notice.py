"""A partner's ticket scanned at a box: the partner is told once."""
import datetime as dt
import tempfile

from scenic_common.simpartner import SimulatedPartner
from scenic_gate.tests.tools import (
    area_time, build_area, new_box, new_id, scan, slot_day)
from scenic_iotbox.store import Store
from scenic_iotbox.validator import ScanRequest, Validator
from scenic_ticket import reservation
from scenic_ticket.tests.tools import configure_pii_key

from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from .. import booking
from .tools import create_partner


class GateNoticeTestCase(RouteTestCase):
    "Test notices of partners' tickets used at the gates"
    module = 'scenic_group'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    def committed(self, function, *args, **kwargs):
        with Transaction().start(DB_NAME, 1) as transaction:
            result = function(*args, **kwargs)
            transaction.commit()
            return result

    def test_box_scan_makes_one_used_notice(self):
        "A box's scan of an OTA ticket gives one 'used' notice, not two"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))

        def sell_to_partner():
            pool = Pool()
            Company = pool.get('company.company')
            TicketType = pool.get('scenic.ticket.type')
            TimeSlot = pool.get('scenic.time_slot')
            Order = pool.get('scenic.order')
            company = Company(area.company)
            with Transaction().set_context(company=area.company,
                    companies=[area.company]):
                partner, _ = create_partner(company, f'ota-{area.company}',
                    kind='ota', term='monthly', free_sale=True,
                    prices=[(TicketType(area.adult), '80')])
                partner.write([partner],
                    {'notice_url': 'http://127.0.0.1:9/notices'})
                slot = TimeSlot(area.slot)
                now = slot.aware(slot.start_time) - dt.timedelta(hours=1)
                request = reservation.BookingRequest(slot=slot.id, items=[
                        reservation.Item(ticket_type=area.codes['ADULT'],
                            visitors=[reservation.Visitor("Li Lei",
                                    'resident_id', new_id(), 'v')])],
                    contact_name="Li Lei", contact_phone='13800138000')
                order_id, _ = booking.book(partner, request, 'OTA-1',
                    now=now)
                order = booking.pay(partner, Order(order_id),
                    Order(order_id).total, now=now)
                return order.tickets[0].id
        ticket = self.committed(sell_to_partner)
        box_id, token = self.committed(new_box, area)
        response = self.client().post(
            f'/{DB_NAME}/scenic/gate/v1/enrol',
            json={'token': token, 'name': "Box", 'hostname': 'gate-1'})
        self.assertEqual(response.status_code, 201, response.get_data())
        headers = {'Authorization':
            f"Box {response.json['box']}:{response.json['secret']}"}
        scans = [scan(area.gate_in, ticket,
                at=area_time(area) - dt.timedelta(minutes=5))]
        for _ in range(2):  # the box resends the batch: a duplicate
            response = self.client().post(
                f'/{DB_NAME}/scenic/gate/v1/scans',
                json={'scans': scans}, headers=headers)
            self.assertEqual(response.status_code, 200, response.get_data())

        with Transaction().start(DB_NAME, 0, readonly=True):
            Notice = Pool().get('scenic.group.notice')
            notice, = Notice.search([('order.tickets', '=', ticket)])
            self.assertEqual(notice.kind, 'ticket_used')
            self.assertEqual(notice.state, 'pending')
            self.assertIn(f'"ticket":{ticket}', notice.payload)
            self.assertIn('"partner_order_id":"OTA-1"', notice.payload)

    def test_partner_code_admitted_at_box_one_notice(self):
        """The OTA pays with its own code, the box syncs it (as a hash) and
        admits it offline, refuses it inside (passback), and the partner
        gets one 'used' notice"""
        from ..notice import deliver_pending
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        scan_at = area_time(area, 12)
        code = f'MT-{area.company}-0001'

        def sell_to_partner():
            pool = Pool()
            Company = pool.get('company.company')
            Gate = pool.get('scenic.gate')
            Rule = pool.get('scenic.gate.rule')
            TicketType = pool.get('scenic.ticket.type')
            TimeSlot = pool.get('scenic.time_slot')
            Order = pool.get('scenic.order')
            company = Company(area.company)
            with Transaction().set_context(company=area.company,
                    companies=[area.company]):
                rule, = Rule.create([{'company': area.company,
                            'name': "Passback", 'anti_passback': True}])
                Gate.write([Gate(area.gate_in)], {'rule': rule.id})
                partner, contract = create_partner(company,
                    f'otacode-{area.company}', kind='ota', term='monthly',
                    free_sale=True, ota_codes=True,
                    key_id=f'otacode-{area.company}',
                    prices=[(TicketType(area.multi), '120')])
                partner.set_notice_secret('notice-secret')
                # the simulated partner's port is known later
                partner.write([partner],
                    {'notice_url': 'http://127.0.0.1:9/notices'})
                slot = TimeSlot(area.slot)
                now = slot.aware(slot.start_time) - dt.timedelta(hours=1)
                request = reservation.BookingRequest(slot=slot.id, items=[
                        reservation.Item(ticket_type=area.codes['MULTI'])],
                    contact_name="Li Lei", contact_phone='13800138000')
                order_id, _ = booking.book(partner, request, 'OTA-CODE-1',
                    now=now)
                order = booking.pay(partner, Order(order_id),
                    Order(order_id).total, codes=[code], now=now)
                ticket, = order.tickets
                self.assertEqual(ticket.partner_code, code)
                self.assertIsNone(ticket.code)
                # the gate-hash cron's work
                CodeHash = pool.get('scenic.gate.code_hash')
                self.assertEqual(CodeHash.fill(now=scan_at,
                        companies=[area.company]), 1)
                return partner.id, ticket.id
        partner_id, ticket = self.committed(sell_to_partner)

        box_id, token = self.committed(new_box, area)
        enrolled = self.client().post(f'/{DB_NAME}/scenic/gate/v1/enrol',
            json={'token': token, 'name': "Box", 'hostname': 'gate-1'})
        self.assertEqual(enrolled.status_code, 201, enrolled.get_data())
        headers = {'Authorization':
            f"Box {enrolled.json['box']}:{enrolled.json['secret']}"}
        answer = self.client().get(f'/{DB_NAME}/scenic/gate/v1/sync',
            headers=headers)
        self.assertEqual(answer.status_code, 200, answer.get_data())
        [synced] = [c for c in answer.json['partner_codes']
            if c['ticket'] == ticket]
        self.assertEqual((synced['persons'], synced['entries']), (1, 3))
        self.assertNotIn(code, answer.get_data(as_text=True))

        data_dir = self.enterContext(tempfile.TemporaryDirectory())
        store = Store(f'{data_dir}/box.sqlite')
        self.addCleanup(store.close)
        store.save_credentials(enrolled.json['box'], enrolled.json['secret'],
            enrolled.json['area'], enrolled.json['gate_generations'],
            scan_at)
        store.apply_sync(answer.json, scan_at)
        validator = Validator(store, data_dir)
        gate = area.gate_in

        def at_gate(text, minutes):
            return validator.scan(ScanRequest(gate=gate, lane=1,
                    medium='qr', data=text),
                now=scan_at + dt.timedelta(minutes=minutes)).decision

        first = at_gate(code, 0)
        self.assertEqual((first.action, first.ticket), ('open', ticket))
        self.assertEqual(at_gate(code, 1).reason, 'passback')
        self.assertEqual(at_gate(f'MT-{area.company}-0002', 2).reason,
            'malformed')

        scans = [payload for _, _, payload in store.pending_scans()]
        self.assertEqual([s['decision'] for s in scans],
            ['open', 'deny', 'deny'])
        for _ in range(2):  # the box resends the batch: duplicates
            response = self.client().post(
                f'/{DB_NAME}/scenic/gate/v1/scans',
                json={'scans': scans}, headers=headers)
            self.assertEqual(response.status_code, 200, response.get_data())
            self.assertEqual(response.json['conflicts'], [])

        with SimulatedPartner(f'otacode-{area.company}',
                'notice-secret') as sim:
            with Transaction().start(DB_NAME, 0) as transaction:
                pool = Pool()
                Notice = pool.get('scenic.group.notice')
                Partner = pool.get('scenic.group.partner')
                Ticket = pool.get('scenic.ticket')
                self.assertEqual(Ticket(ticket).state, 'used')
                Partner.write([Partner(partner_id)], {'notice_url': sim.url})
                notice, = Notice.search([('order.tickets', '=', ticket)])
                self.assertEqual(notice.kind, 'ticket_used')
                # only this test's notice is due (others share the base)
                table = Notice.__table__()
                transaction.connection.cursor().execute(*table.update(
                        [table.state], ['failed'],
                        where=(table.state == 'pending')
                        & (table.id != notice.id)))
                self.assertEqual(deliver_pending(
                        now=dt.datetime.utcnow() + dt.timedelta(minutes=1)),
                    (1, 0))
                transaction.commit()
            [handled] = sim.handled
            self.assertEqual((handled['ticket'], handled['code']),
                (ticket, code))
            self.assertEqual(handled['partner_order_id'], 'OTA-CODE-1')
            self.assertEqual(sim.deliveries, 1)
