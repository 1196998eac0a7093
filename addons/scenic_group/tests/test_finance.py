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

    @with_transaction()
    def test_tickets_added_to_paid_order_deferred_then_earned(self):
        "A ticket added to a paid, posted order is deferred, then earned"
        pool = Pool()
        Gate = pool.get('scenic.gate')
        Box = pool.get('scenic.gate.box')
        from scenic_finance.api import setup_area
        from scenic_finance.history import History
        from scenic_finance.posting import (
            area_today, area_tz, post_days, split_vat)
        from ..amend import amend

        company = create_area()
        with set_company(company):
            today = area_today(company)
            sold, changed, visit = (today - dt.timedelta(days=n)
                for n in (6, 5, 1))
            rule = setup_area(company, years={sold.year, today.year})
            pool.get('account.journal.period').create([{
                        'journal': rule.journal.id, 'period': p.id}
                    for p in pool.get('account.period').search(
                        [('company', '=', company.id)])])
            zone = create_zone(company, daily_max=1000, instant_max=500)
            group = create_ticket_type(company, 'GROUP10', '1000',
                category='group', persons=10, real_name=False, id_limit=0)
            partner, _ = create_partner(company, 'sunny', term='monthly',
                prices=[(group, '800')], free_sale=True)
            slot = create_slot(company, visit, (9, 0), (9, 30),
                capacity=100)
            tz = area_tz(company)
            request = BookingRequest(slot=slot.id, items=[
                    Item(ticket_type='GROUP10', persons=10,
                        field=f'items[{n}]') for n in range(2)],
                contact_name="Guide Li", contact_phone='13800138000')
            order_id, _ = booking.book(partner, request, 'P-1',
                now=dt.datetime.combine(sold, dt.time(8), tzinfo=tz))
            order = pool.get('scenic.order')(order_id)
            booking.pay(partner, order, order.total,
                now=dt.datetime.combine(sold, dt.time(8), tzinfo=tz))
            net, _ = split_vat(Decimal('800'), rule.vat_rate)

            def deferred():
                return sum((l.credit - l.debit
                        for l in pool.get('account.move.line').search([
                                ('account.code', '=', '2203'),
                                ('move.company', '=', company.id)])),
                    Decimal(0))

            self.assertTrue(post_days(company, until=sold))
            self.assertEqual(deferred(), 2 * net)
            # a third ticket of 10, charged 800 on the partner's account
            at = dt.datetime.combine(changed, dt.time(8), tzinfo=tz)
            line = order.lines[0]  # one ticket of 10
            order = amend(order, line, persons=20, now=at)
            added = max(order.tickets, key=lambda t: t.id)
            self.assertEqual((len(order.tickets), added.state), (3, 'valid'))
            self.assertTrue(post_days(company, until=changed))
            self.assertEqual(deferred(), 3 * net)
            box, = Box.create([{'company': company.id, 'name': "Box"}])
            gate, = Gate.create([{'company': company.id, 'code': 'IN',
                        'name': "Entrance", 'zone': zone.id,
                        'direction': 'in', 'lanes': 1, 'box': box.id}])
            History(company, order.channel, slot, gate).enter([added.id],
                at + dt.timedelta(hours=2))
            self.assertTrue(post_days(company, until=changed
                    + dt.timedelta(days=1)))
            self.assertEqual(deferred(), 2 * net)
            # the two others expire with their day of visit
            post_days(company, until=today - dt.timedelta(days=1))
            self.assertEqual(deferred(), Decimal(0))
            for move in pool.get('account.move').search(
                    [('company', '=', company.id)]):
                self.assertEqual(sum(l.debit for l in move.lines),
                    sum(l.credit for l in move.lines))
