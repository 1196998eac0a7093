"""Partner orders on the real ledger: with scenic_finance activated, a
partner's account payments post to its 1122 应收账款 with the partner as
party."""
import datetime as dt
import unittest
from decimal import Decimal

from scenic_ticket.reservation import BookingRequest, Item
from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone)

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

from .. import booking
from .tools import create_partner


class PartnerLedgerTestCase(unittest.TestCase):
    "Test partner orders on the ledger"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module(['scenic_group', 'scenic_finance'])

    @with_transaction()
    def test_partner_payment_posts_to_its_receivable(self):
        "A partner's paid order lands on 1122 with the partner as party"
        pool = Pool()
        Payment = pool.get('scenic.payment')
        Line = pool.get('account.move.line')
        JournalPeriod = pool.get('account.journal.period')
        Period = pool.get('account.period')
        from scenic_finance.api import setup_area
        from scenic_finance.posting import area_today, area_tz, post_days

        company = create_area()
        with set_company(company):
            today = area_today(company)
            day = today - dt.timedelta(days=3)
            rule = setup_area(company, years={day.year, today.year})
            JournalPeriod.create([{'journal': rule.journal.id,
                        'period': p.id} for p in Period.search(
                        [('company', '=', company.id)])])
            create_zone(company, daily_max=1000, instant_max=500)
            group = create_ticket_type(company, 'GROUP10', '1000',
                category='group', persons=10, real_name=False, id_limit=0)
            partner, _ = create_partner(company, 'sunny', term='monthly',
                prices=[(group, '800')], free_sale=True)
            other, _ = create_partner(company, 'rainy', term='monthly',
                prices=[(group, '800')], free_sale=True)
            slot = create_slot(company, day, (9, 0), (9, 30), capacity=100)
            now = dt.datetime.combine(day, dt.time(8, 0),
                tzinfo=area_tz(company))

            def paid_order(partner, poid, count):
                request = BookingRequest(slot=slot.id, items=[
                        Item(ticket_type='GROUP10', persons=10,
                            field=f'items[{n}]') for n in range(count)],
                    contact_name="Guide Li", contact_phone='13800138000')
                order_id, _ = booking.book(partner, request, poid, now=now)
                order = pool.get('scenic.order')(order_id)
                return booking.pay(partner, order, order.total, now=now)

            first = paid_order(partner, 'P-1', 2)
            paid_order(other, 'R-1', 1)
            self.assertEqual([(p.provider, p.finance_party)
                    for p in Payment.search([('order', '=', first.id)])],
                [('partner_credit', partner.party)])

            self.assertTrue(post_days(company, until=today))
            lines = Line.search([('account.code', '=', '1122'),
                    ('move.company', '=', company.id)])
            self.assertEqual(sorted((l.party.id, l.debit - l.credit)
                    for l in lines), sorted([
                        (partner.party.id, Decimal('1600.00')),
                        (other.party.id, Decimal('800.00'))]))
            self.assertTrue(all(l.move.state == 'posted' for l in lines))
