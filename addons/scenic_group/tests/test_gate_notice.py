"""A partner's ticket scanned at a box: the partner is told once."""
import datetime as dt

from scenic_gate.tests.tools import (
    area_time, build_area, new_box, new_id, scan, slot_day)
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
