"""A partner's month on Tryton's invoicing: the statement becomes a posted
customer invoice that moves the billed amount from 1122 to 112201 without
counting the receivable twice, overdue invoices are dunned, payments clear
them."""
import datetime as dt
import unittest
from decimal import Decimal
from types import SimpleNamespace

from scenic_ticket.reservation import BookingRequest, Item
from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone)

from trytond.model.modelsql import SQLConstraintError  # noqa: F401
from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .. import booking
from ..exceptions import InvoiceError
from .tools import create_partner

D = Decimal


class PartnerInvoiceTestCase(unittest.TestCase):
    "Test partner invoices and dunning"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        # In sorted order, the cache name of scenario_agency_month's
        # activate_modules: the scenario restores this database instead
        # of installing the modules again.
        activate_module(['account_dunning', 'account_invoice',
                'scenic_finance', 'scenic_group'])

    @with_transaction()
    def test_month_invoice_dunning_and_payment(self):
        "The month's statement invoiced, dunned when overdue, then paid"
        pool = Pool()
        Line = pool.get('account.move.line')
        Journal = pool.get('account.journal')
        JournalPeriod = pool.get('account.journal.period')
        Period = pool.get('account.period')
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        Entry = pool.get('scenic.group.entry')
        Term = pool.get('account.invoice.payment_term')
        Method = pool.get('account.invoice.payment.method')
        Dunning = pool.get('account.dunning')
        Account = pool.get('account.account')
        ModelData = pool.get('ir.model.data')
        from scenic_finance.api import setup_area
        from scenic_finance.posting import area_today, area_tz, post_days

        from ..invoice import (
            invoice_month, pay_invoice, setup_dunning, setup_invoicing)

        company = create_area()
        with set_company(company):
            today = area_today(company)
            day = today.replace(day=1) - dt.timedelta(days=20)
            rule = setup_area(company, years={day.year, today.year})
            setup_invoicing(company)
            cash = Journal(ModelData.get_id('account', 'journal_cash'))
            JournalPeriod.create([{'journal': j.id, 'period': p.id}
                    for j in [rule.journal, cash]
                    for p in Period.search([('company', '=', company.id)])])
            create_zone(company, daily_max=1000, instant_max=500)
            group = create_ticket_type(company, 'GROUP10', '1000',
                category='group', persons=10, real_name=False, id_limit=0)
            partner, _ = create_partner(company, 'sunny', term='monthly',
                prices=[(group, '800')], free_sale=True, bill_admitted=True)
            term, = Term.create([{'name': "30 days", 'lines': [('create', [{
                                'type': 'remainder',
                                'relativedeltas': [('create', [{
                                                'days': 30}])]}])]}])
            partner.party.customer_payment_term = term
            partner.party.save()
            slot = create_slot(company, day, (9, 0), (9, 30), capacity=100)
            now = dt.datetime.combine(day, dt.time(8, 0),
                tzinfo=area_tz(company))

            def paid_order(poid, count):
                request = BookingRequest(slot=slot.id, items=[
                        Item(ticket_type='GROUP10', persons=10,
                            field=f'items[{n}]') for n in range(count)],
                    contact_name="Guide Li", contact_phone='13800138000')
                order_id, _ = booking.book(partner, request, poid, now=now)
                order = booking.pay(partner, Order(order_id),
                    Order(order_id).total, now=now)
                from ..money import record_charge
                record_charge(partner, order)
                return order

            first = paid_order('P-1', 2)
            paid_order('P-2', 1)
            # One of the first group's two tickets came; the other order
            # did not come at all: 1600 of no-show credits.
            Ticket.write([first.tickets[0]], {'state': 'used'})
            self.assertEqual(Order.settle_arrivals(date=today), 2)
            self.assertTrue(post_days(company, until=today))

            def balance(code):
                lines = Line.search([('account.code', '=', code),
                        ('party', '=', partner.party.id)])
                return sum((l.debit - l.credit for l in lines), D(0))
            self.assertEqual(balance('1122'), D('2400'))

            invoice = invoice_month(partner, day.year, day.month)
            self.assertEqual(invoice.state, 'posted')
            self.assertEqual(invoice.total_amount, D('800'))
            self.assertEqual(sorted(l.amount for l in invoice.lines),
                [D('-800'), D('-800'), D('800'), D('1600')])
            self.assertEqual(invoice.total_amount, Entry.balance(partner))
            # The receivable is counted once: moved from 1122 to 112201,
            # finance's lines reconciled with the invoice's.
            self.assertEqual(balance('1122'), D(0))
            self.assertEqual(balance('112201'), D('800'))
            self.assertFalse(Line.search([('account.code', '=', '1122'),
                        ('party', '=', partner.party.id),
                        ('reconciliation', '=', None)]))
            self.assertEqual(partner.party.receivable, D('800'))
            revenue, = Account.search([('code', '=', '5001'),
                    ('company', '=', company.id)])
            allowance = sum(l.debit - l.credit for l in invoice.move.lines
                if l.account == revenue)
            self.assertEqual(allowance, D('1600'))
            line_to_pay, = invoice.lines_to_pay
            self.assertEqual(line_to_pay.maturity_date,
                invoice.invoice_date + dt.timedelta(days=30))
            with self.assertRaisesRegex(InvoiceError, 'already invoiced'):
                invoice_month(partner, day.year, day.month)
            with self.assertRaisesRegex(InvoiceError, 'nothing to invoice'):
                invoice_month(partner, today.year, today.month)

            # Overdue: dunned at the first level, not before.
            setup_dunning(company, levels=(15, 30))
            due = line_to_pay.maturity_date
            Dunning.generate_dunnings(date=due + dt.timedelta(days=14))
            self.assertFalse(Dunning.search([]))
            Dunning.generate_dunnings(date=due + dt.timedelta(days=16))
            dunning, = Dunning.search([])
            self.assertEqual(dunning.line, line_to_pay)
            self.assertEqual(dunning.level.overdue, dt.timedelta(days=15))

            # Paid: the invoice is paid, the statement shows the payment,
            # nothing is owed or dunned any more.
            bank, = Account.search([('code', '=', '1002'),
                    ('company', '=', company.id)])
            method, = Method.create([{'name': "Bank", 'company': company.id,
                        'journal': cash.id, 'debit_account': bank.id,
                        'credit_account': bank.id}])
            with self.assertRaisesRegex(InvoiceError, 'at most 800'):
                pay_invoice(invoice, D('900'), method, date=today)
            # Tryton's Pay wizard pays through Invoice.pay_invoice: a part
            # paid so shows on the partner's statement too.
            pool.get('account.invoice')(invoice.id).pay_invoice(
                D('300'), method, today)
            self.assertEqual(pool.get('account.invoice')(
                    invoice.id).amount_to_pay, D('500'))
            self.assertEqual(Entry.balance(partner), D('500'))
            pay_invoice(pool.get('account.invoice')(invoice.id), D('500'),
                method, date=today)
            invoice = pool.get('account.invoice')(invoice.id)
            self.assertEqual(invoice.state, 'paid')
            self.assertEqual(Entry.balance(partner), D(0))
            self.assertEqual(balance('112201'), D(0))
            self.assertEqual(partner.party.receivable, D(0))
            Dunning.delete(Dunning.search([]))
            Dunning.generate_dunnings(date=due + dt.timedelta(days=40))
            self.assertFalse(Dunning.search([]))

    @with_transaction()
    def test_pay_invoice_refuses_other_invoices(self):
        "pay_invoice refuses an invoice not of a partner"
        from ..invoice import pay_invoice
        invoice = SimpleNamespace(
            group_partner=None, state='posted', rec_name="INV-1")
        with self.assertRaisesRegex(InvoiceError, 'not a posted partner'):
            pay_invoice(invoice, D('10'), None)
