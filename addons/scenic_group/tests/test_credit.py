"""A partner's credit limit and deposit on the ledger (account_credit_limit,
account_deposit): checked against its receivable, its orders finance has
not posted yet and its deposit; a payment on the ledger frees credit; a
deposit is drawn down by orders and given back by refunds. The concurrency
test needs PostgreSQL."""
import datetime as dt
import unittest
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from scenic_ticket.reservation import BookingRequest, Item
from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone)

from trytond import backend
from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import (
    DB_NAME, activate_module, drop_db, with_transaction)
from trytond.transaction import Transaction, TransactionError

from .. import booking, money
from ..booking import PartnerError
from ..exceptions import DepositError
from .tools import create_partner

D = Decimal
# The modules and order of test_module.ScenicGroupTestCase (with
# account_dunning, which these tests do not use): the database activated
# here is cached under that name and the module test restores it instead
# of installing the modules again.
MODULES = ['scenic_group', 'scenic_finance', 'account_invoice',
    'account_dunning', 'account_credit_limit', 'account_deposit']


def ledger_area():
    """An area with the Chinese chart, this year's periods, finance's rule,
    a zone and a GROUP10 ticket type; return (company, rule, ticket type)."""
    pool = Pool()
    JournalPeriod = pool.get('account.journal.period')
    Period = pool.get('account.period')
    from scenic_finance.api import setup_area
    from scenic_finance.posting import area_today
    company = create_area()
    with set_company(company):
        today = area_today(company)
        rule = setup_area(company, years={
                (today - dt.timedelta(days=5)).year, today.year,
                (today + dt.timedelta(days=5)).year})
        JournalPeriod.create([{'journal': rule.journal.id, 'period': p.id}
                for p in Period.search([('company', '=', company.id)])])
        create_zone(company, daily_max=5000, instant_max=5000)
        group = create_ticket_type(company, 'GROUP10', '1000',
            category='group', persons=10, real_name=False, id_limit=0)
    return company, rule, group


def yesterday(company):
    """A slot of yesterday's morning and a time before it: finance posts
    days that are over."""
    from scenic_finance.posting import area_today, area_tz
    day = area_today(company) - dt.timedelta(days=1)
    slot = create_slot(company, day, (9, 0), (9, 30), capacity=1000)
    return slot, dt.datetime.combine(day, dt.time(8, 0),
        tzinfo=area_tz(company))


def paid_order(partner, slot, count, poid, now=None):
    "Book and confirm `count` GROUP10 tickets on the partner's account."
    request = BookingRequest(slot=slot.id, items=[
            Item(ticket_type='GROUP10', persons=10, field=f'items[{n}]')
            for n in range(count)],
        contact_name="Guide Li", contact_phone='13800138000')
    order_id, _ = booking.book(partner, request, poid, now=now)
    order = Pool().get('scenic.order')(order_id)
    order = booking.pay(partner, order, order.total, now=now)
    money.record_charge(partner, order)
    return order


def receivable(partner, code='1122'):
    "The partner's balance on the account (debit - credit), children apart."
    Line = Pool().get('account.move.line')
    return sum((l.debit - l.credit for l in Line.search([
                    ('account.code', '=', code),
                    ('party', '=', partner.party.id)])), D(0))


class PartnerCreditTestCase(unittest.TestCase):
    "Test partner credit and deposits on the ledger"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module(MODULES)

    @classmethod
    def tearDownClass(cls):
        # The ledger modules would stay activated for the test classes run
        # after this one, whose partners keep their money in entries.
        drop_db()

    @with_transaction()
    def test_deposit_drawn_by_orders_and_given_back(self):
        "A deposit on 220301 is drawn by orders, refused beyond, refunded"
        pool = Pool()
        Account = pool.get('account.account')
        Entry = pool.get('scenic.group.entry')
        from scenic_finance.posting import area_today, post_days
        company, rule, group = ledger_area()
        with set_company(company):
            today = area_today(company)
            partner, _ = create_partner(company, 'bluesky', term='deposit',
                prices=[(group, '300')], free_sale=True)
            bank, = Account.search([('company', '=', company.id),
                    ('code', '=', '1002')])
            deposit, = Account.search([('company', '=', company.id),
                    ('code', '=', money.DEPOSIT_ACCOUNT)])
            self.assertTrue(deposit.type.deposit)
            for amount, account in [(D(0), bank), (D(-5), bank),
                    (D(100), deposit)]:
                with self.assertRaises(DepositError):
                    money.top_up_deposit(partner, amount, account)
            self.assertEqual(money.deposit_balance(partner), D(0))

            money.top_up_deposit(partner, D('1000'), bank)
            self.assertEqual(money.deposit_balance(partner), D('1000'))
            self.assertEqual(receivable(partner, '1002'), D(0))
            self.assertEqual(money.balance(partner), D('-1000'))

            slot, now = yesterday(company)
            first = paid_order(partner, slot, 2, 'B-1', now)
            # Drawn at once; finance has not posted the order yet.
            self.assertEqual(money.deposit_balance(partner), D('400'))
            self.assertEqual(receivable(partner), D('-600'))
            self.assertEqual(money.balance(partner), D('-400'))
            with self.assertRaises(PartnerError) as refused:
                paid_order(partner, slot, 2, 'B-2', now)
            self.assertEqual(refused.exception.code, 'deposit_insufficient')
            paid_order(partner, slot, 1, 'B-3', now)
            self.assertEqual(money.deposit_balance(partner), D('100'))
            self.assertEqual(money.balance(partner), D('-100'))

            # Finance posts the day: the receivable clears, nothing moves.
            self.assertTrue(post_days(company, until=today))
            self.assertEqual(receivable(partner), D(0))
            self.assertEqual(money.balance(partner), D('-100'))

            booking.cancel_and_record(partner, first.id, by_back_office=True,
                now=now)
            self.assertEqual(money.deposit_balance(partner), D('700'))
            self.assertEqual(money.balance(partner), D('-700'))
            # The statement's entries agree with the ledger.
            self.assertEqual(Entry.balance(partner), D('-700'))
            # The month's invoice: what the deposit paid is not to pay again.
            from ..invoice import invoice_month, setup_invoicing
            setup_invoicing(company)
            invoice = invoice_month(partner, slot.date.year, slot.date.month)
            self.assertEqual(invoice.state in ('posted', 'paid'), True)
            self.assertEqual(sorted(l.amount for l in invoice.lines),
                [D('-600'), D('-300'), D('300'), D('600')])
            self.assertEqual(invoice.total_amount, D(0))
            self.assertEqual(money.balance(partner), D('-700'))
            moves = [l.move for l in pool.get('account.move.line').search(
                    [('account', '=', deposit.id)])]
            self.assertTrue(all(m.state == 'posted' and m.origin
                    and m.origin.__name__ == 'scenic.group.entry'
                    for m in moves))

    @with_transaction()
    def test_credit_limit_reads_the_ledger(self):
        "The limit counts unposted orders, and a payment frees credit"
        pool = Pool()
        Account = pool.get('account.account')
        Move = pool.get('account.move')
        Entry = pool.get('scenic.group.entry')
        Party = pool.get('party.party')
        from scenic_finance.posting import area_today, post_days
        company, rule, group = ledger_area()
        with set_company(company):
            today = area_today(company)
            partner, contract = create_partner(company, 'sunny',
                term='credit', credit_limit='1000',
                prices=[(group, '400')], free_sale=True)
            # The contract's limit is the party's, that Tryton checks.
            self.assertEqual(Party(partner.party.id).credit_limit_amount,
                D('1000'))
            slot, now = yesterday(company)
            paid_order(partner, slot, 2, 'S-1', now)
            self.assertEqual(money.balance(partner), D('800'))
            with self.assertRaises(PartnerError) as refused:
                paid_order(partner, slot, 1, 'S-2', now)
            self.assertEqual(refused.exception.code, 'credit_limit')

            self.assertTrue(post_days(company, until=today))
            self.assertEqual(receivable(partner), D('800'))
            self.assertEqual(money.balance(partner), D('800'))
            with self.assertRaises(PartnerError):
                paid_order(partner, slot, 1, 'S-3', now)

            # The partner pays by bank: the ledger frees its credit, though
            # no entry says so (the check reads the ledger).
            bank, = Account.search([('company', '=', company.id),
                    ('code', '=', '1002')])
            receivable_account = rule.method_account('partner_credit')
            move, = Move.create([{
                        'company': company.id, 'journal': rule.journal.id,
                        'period': pool.get('account.period').find(
                            company, date=today).id,
                        'date': today,
                        'lines': [('create', [
                                    {'account': bank.id, 'debit': D(800),
                                        'credit': 0},
                                    {'account': receivable_account.id,
                                        'party': partner.party.id,
                                        'debit': 0, 'credit': D(800)}])],
                        }])
            Move.post([move])
            self.assertEqual(money.balance(partner), D(0))
            self.assertEqual(Entry.balance(partner), D('800'))
            paid_order(partner, slot, 2, 'S-4', now)
            self.assertEqual(money.balance(partner), D('800'))

    @with_transaction()
    def test_over_the_limit_warning_for_supervisors_only(self):
        "Over the limit on 'warn': refused, or a warning for group_credit_limit"
        pool = Pool()
        User = pool.get('res.user')
        Group = pool.get('res.group')
        ModelData = pool.get('ir.model.data')
        Order = pool.get('scenic.order')
        from trytond.modules.account_credit_limit.exceptions import (
            CreditLimitError, CreditLimitWarning)
        from scenic_finance.posting import area_today
        company, rule, group = ledger_area()
        with set_company(company):
            today = area_today(company)
            partner, contract = create_partner(company, 'warned',
                term='credit', credit_limit='500', prices=[(group, '400')],
                free_sale=True)
            contract.__class__.draft([contract])
            contract.__class__.write([contract], {'over_credit': 'warn'})
            contract.__class__.activate([contract])
            slot = create_slot(company, today + dt.timedelta(days=1),
                (9, 0), (9, 30), capacity=200)
            paid_order(partner, slot, 1, 'W-1')
            request = BookingRequest(slot=slot.id, items=[
                    Item(ticket_type='GROUP10', persons=10,
                        field='items[0]')],
                contact_name="Guide Li", contact_phone='13800138000')
            order_id, _ = booking.book(partner, request, 'W-2')
            clerk, = User.create([{'login': 'clerk', 'name': "Clerk",
                        'companies': [('add', [company.id])],
                        'company': company.id}])
            supervisor, = User.create([{'login': 'boss', 'name': "Boss",
                        'companies': [('add', [company.id])],
                        'company': company.id,
                        'groups': [('add', [ModelData.get_id(
                                        'account_credit_limit',
                                        'group_credit_limit')])]}])
            self.assertTrue(Group(ModelData.get_id('account_credit_limit',
                        'group_credit_limit')) in supervisor.groups)
            for user, error in [(clerk, CreditLimitError),
                    (supervisor, CreditLimitWarning)]:
                with Transaction().set_user(user.id), \
                        Transaction().set_context(company=company.id):
                    with self.assertRaises(error):
                        booking.pay(partner, Order(order_id), D(400))
            self.assertEqual(Order(order_id).state, 'reserved')

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_confirmations_on_the_ledger(self):
        "Concurrent confirmations never pass the limit or the deposit"
        from scenic_ticket.dbtools import use_read_committed
        from scenic_finance.posting import area_today

        def setup():
            pool = Pool()
            Account = pool.get('account.account')
            company, rule, group = ledger_area()
            with set_company(company):
                today = area_today(company)
                credit, _ = create_partner(company, 'rushcredit',
                    term='credit', credit_limit='1000',
                    prices=[(group, '90')], free_sale=True)
                deposit, _ = create_partner(company, 'rushdeposit',
                    term='deposit', prices=[(group, '90')], free_sale=True)
                bank, = Account.search([('company', '=', company.id),
                        ('code', '=', '1002')])
                money.top_up_deposit(deposit, D('500'), bank)
                slot = create_slot(company, today + dt.timedelta(days=1),
                    (9, 0), (9, 30), capacity=1000)
                orders = []
                for partner in [credit, deposit]:
                    for n in range(16):
                        request = BookingRequest(slot=slot.id, items=[
                                Item(ticket_type='GROUP10', persons=10,
                                    field='items[0]')],
                            contact_name="Guide Li",
                            contact_phone='13800138000')
                        order_id, _ = booking.book(partner, request,
                            f'R-{partner.id}-{n}')
                        orders.append((partner.id, order_id))
            return company.id, credit.id, deposit.id, orders

        # Creating the chart locks tables: started again with those locks,
        # as trytond's dispatcher does.
        extras = {}
        while True:
            try:
                with Transaction().start(DB_NAME, 0, **extras) as transaction:
                    ids = setup()
                    transaction.commit()
                    break
            except TransactionError as error:
                error.fix(extras)
        company_id, credit_id, deposit_id, orders = ids

        def confirm(job):
            # As the partner API's endpoint: READ COMMITTED, started again
            # with the lock posting the draw-down asks for (the ledger's
            # strict sequence) and when the database asks for a retry.
            partner_id, order_id = job
            extras = {}
            for attempt in range(10):
                try:
                    with Transaction().start(
                            DB_NAME, 0, **extras) as transaction:
                        use_read_committed()
                        with transaction.set_context(company=company_id):
                            pool = Pool()
                            partner = pool.get(
                                'scenic.group.partner')(partner_id)
                            order = pool.get('scenic.order')(order_id)
                            try:
                                order = booking.pay(
                                    partner, order, order.total)
                            except PartnerError as error:
                                return partner_id, error.code
                            money.record_charge(partner, order)
                            transaction.commit()
                            return partner_id, 'paid'
                except TransactionError as error:
                    error.fix(extras)
                except backend.DatabaseOperationalError:
                    pass
            return partner_id, 'gave up'
        with ThreadPoolExecutor(max_workers=16) as executor:
            results = list(executor.map(confirm, orders))
        paid = {p: [r for q, r in results if q == p].count('paid')
            for p in (credit_id, deposit_id)}
        # 1000 // 90 and 500 // 90
        self.assertEqual(paid, {credit_id: 11, deposit_id: 5}, results)
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            with transaction.set_context(company=company_id):
                Partner = Pool().get('scenic.group.partner')
                self.assertEqual(money.balance(Partner(credit_id)),
                    D(90 * 11))
                self.assertEqual(money.deposit_balance(Partner(deposit_id)),
                    D(500 - 90 * 5))
                # The draw-downs took their post numbers under the strict
                # sequence's lock (taken again under READ COMMITTED).
                Move = Pool().get('account.move')
                numbers = [m.number for m in Move.search([
                            ('company', '=', company_id),
                            ('lines.party', '=',
                                Partner(deposit_id).party.id),
                            ('state', '=', 'posted')])]
                self.assertEqual(len(numbers), 1 + 5)
                self.assertEqual(len(set(numbers)), len(numbers), numbers)

        # The back office cancels one: giving back the deposit posts a move
        # too, in Cancel's own READ COMMITTED transaction.
        paid_deposit = [o for (p, o), (_, r) in zip(orders, results)
            if p == deposit_id and r == 'paid']
        with Transaction().start(DB_NAME, 0) as transaction:
            with transaction.set_context(company=company_id):
                Order = Pool().get('scenic.order')
                Order.cancel([Order(paid_deposit[0])])
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            with transaction.set_context(company=company_id):
                Partner = Pool().get('scenic.group.partner')
                refunded = booking.refunded_on_account(paid_deposit[0])
                self.assertGreater(refunded, 0)
                self.assertEqual(money.deposit_balance(Partner(deposit_id)),
                    D(500 - 90 * 5) + refunded)
                Move = Pool().get('account.move')
                numbers = [m.number for m in Move.search([
                            ('company', '=', company_id),
                            ('lines.party', '=',
                                Partner(deposit_id).party.id),
                            ('state', '=', 'posted')])]
                self.assertEqual(len(set(numbers)), 1 + 5 + 1)
