"""The monthly invoice of a partner, on Tryton's invoicing, and its dunning.

Registered only when `scenic_finance` and `account_invoice` are activated.

How it sits on the ledger (finance already posts each day's partner-credit
payments: debit 1122 应收账款 with the partner as party, credit 2203; refunds
the other way):

- The invoice's account is 112201 应收账款-已开票 (a child of 1122), its
  receivable line carries the maturity date of the partner's payment term.
- Its lines follow the statement's entries of the month: an order is a line
  on 1122 (crediting what finance debited), a refund a negative line on
  1122, a no-show credit a negative line on the revenue account (a sales
  allowance, it debits 5001). Payments and deposits are not invoice lines.
- So posting the invoice moves the month's billed amount from 1122 to
  112201 and the partner's receivable (1122 with its children) is counted
  once; the month's 1122 lines (finance's and the invoice's) are reconciled
  when they balance. Dunning (account_dunning) sees only the invoice's line
  to pay: finance's lines have no maturity date.
- A partner buying against a deposit had its orders paid from it when
  they were confirmed (money.move_deposit credited 1122): its invoice has a
  negative 1122 line for what the deposit paid, so only the rest is to pay.
- No tax lines: finance posts VAT when revenue is recognised.
- Finance staff record the partner's payment with Tryton's own Pay button
  on the invoice; a payment made so (or by pay_invoice below) is also an
  entry of the partner's statement (Invoice.pay_invoice).
"""
import datetime as dt
from decimal import Decimal

from scenic_ticket.slot import area_today
from trytond.i18n import gettext
from trytond.model import ModelView, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction
from trytond.wizard import Button, StateAction, StateView, Wizard

from .exceptions import InvoiceError
from .money import DEPOSIT_ACCOUNT, ledger_account, on_ledger
from .statement import PartnerMonth, active_partner, month_bounds, statement

INVOICED_ACCOUNT = '112201'
RECEIVABLE_ACCOUNT = '1122'


class Invoice(metaclass=PoolMeta):
    __name__ = 'account.invoice'
    group_partner = fields.Many2One(
        'scenic.group.partner', "Group Partner", readonly=True,
        ondelete='RESTRICT')
    group_month = fields.Date(
        "Group Month", readonly=True,
        help="The first day of the month the partner's statement covers.")

    def pay_invoice(self, amount, payment_method, date, description=None,
            overpayment=0, party=None):
        # Tryton's Pay wizard and pay_invoice below both come here: the
        # partner's statement shows the money.
        lines = super().pay_invoice(amount, payment_method, date,
            description=description, overpayment=overpayment, party=party)
        if self.group_partner:
            Pool().get('scenic.group.entry').record(self.group_partner,
                'payment', -amount, date=date, description=self.number)
        return lines


class InvoiceLine(metaclass=PoolMeta):
    __name__ = 'account.invoice.line'

    @classmethod
    def _account_domain(cls, type_):
        domain = super()._account_domain(type_)
        if type_ == 'out':
            # A statement line clears the partner's unbilled receivable.
            domain = domain + [('type.receivable', '=', True)]
        return domain

    @classmethod
    def _get_origin(cls):
        return super()._get_origin() + ['scenic.group.entry']


def invoice_month(partner, year, month, post=True):
    """The partner's invoice for the month: created from its statement,
    posted, and its 1122 lines reconciled with finance's when they balance.

    Refused if the month is already invoiced or has nothing to invoice."""
    pool = Pool()
    Invoice = pool.get('account.invoice')
    Rule = pool.get('scenic.finance.rule')
    first, last = month_bounds(year, month)
    company = partner.company
    with Transaction().set_context(company=company.id):
        # One invoice per partner and month: concurrent runs queue on the
        # partner's row (the lock its confirmations take).
        from .booking import lock_partner
        lock_partner(partner)
        if Invoice.search([('group_partner', '=', partner.id),
                    ('group_month', '=', first),
                    ('state', '!=', 'cancelled')], limit=1):
            raise InvoiceError(gettext(
                    'scenic_group.msg_invoice_month_done',
                    partner=partner.rec_name, month=f'{year}-{month:02d}'))
        data = statement(partner, year, month)
        rule = Rule.for_company(company)
        receivable = rule.method_account('partner_credit')
        invoiced = ledger_account(company, INVOICED_ACCOUNT)
        lines = []
        for entry in data['entries']:
            if entry.kind in ('payment', 'deposit'):
                continue
            account = (receivable if entry.kind in ('charge', 'refund')
                else rule.revenue_account)
            lines.append({
                    'type': 'line', 'account': account.id,
                    'quantity': 1, 'unit_price': entry.amount,
                    'description': (f"{entry.date} "
                        f"{data['kinds'][entry.kind]}: "
                        f"{entry.description or ''}").strip(),
                    'origin': str(entry),
                    })
        drawn = drawn_from_deposit(partner, data['entries'])
        if drawn:
            # Those orders were paid from the deposit (money.move_deposit
            # credited 1122 already): only the rest is to pay.
            lines.append({
                    'type': 'line', 'account': receivable.id,
                    'quantity': 1, 'unit_price': -drawn,
                    'description': gettext(
                        'scenic_group.msg_invoice_deposit_line'),
                    })
        if not lines:
            raise InvoiceError(gettext(
                    'scenic_group.msg_invoice_month_empty',
                    partner=partner.rec_name, month=f'{year}-{month:02d}'))
        party = partner.party
        address = party.address_get(type='invoice')
        if address is None:
            address, = pool.get('party.address').create(
                [{'party': party.id}])
        invoice, = Invoice.create([{
                    'company': company.id, 'type': 'out',
                    'party': party.id,
                    'invoice_address': address.id,
                    'account': invoiced.id,
                    'journal': rule.journal.id,
                    'currency': company.currency.id,
                    'payment_term': (party.customer_payment_term.id
                        if party.customer_payment_term else None),
                    'invoice_date': last,
                    'payment_term_date': last,
                    'description': f"{partner.rec_name} {year}-{month:02d}",
                    'group_partner': partner.id, 'group_month': first,
                    'lines': [('create', lines)],
                    }])
        if post:
            # The month is over: a due date already past is expected.
            with Transaction().set_context(_skip_warnings=True):
                Invoice.post([invoice])
            reconcile_month(invoice)
    return invoice


def drawn_from_deposit(partner, entries):
    "What the deposit paid for these entries' orders, net of refunds."
    if not on_ledger():
        return Decimal(0)
    Line = Pool().get('account.move.line')
    origins = [str(e) for e in entries if e.kind in ('charge', 'refund')]
    if not origins:
        return Decimal(0)
    deposit = ledger_account(partner.company, DEPOSIT_ACCOUNT)
    lines = Line.search([
            ('account', '=', deposit.id),
            ('party', '=', partner.party.id),
            ('move.origin', 'in', origins),
            ('move.state', '=', 'posted'),
            ])
    return sum((l.debit - l.credit for l in lines), Decimal(0))


def reconcile_month(invoice):
    """Reconcile the partner's open 1122 lines up to the invoice date with
    the invoice's 1122 lines when together they balance (they do when the
    month's orders were paid in the month)."""
    pool = Pool()
    Line = pool.get('account.move.line')
    Rule = pool.get('scenic.finance.rule')
    account = Rule.for_company(invoice.company).method_account(
        'partner_credit')
    own = [l for l in invoice.move.lines if l.account == account]
    if not own:
        return False
    others = Line.search([
            ('account', '=', account.id),
            ('party', '=', invoice.party.id),
            ('reconciliation', '=', None),
            ('move.state', '=', 'posted'),
            ('date', '<=', invoice.invoice_date),
            ('move', '!=', invoice.move.id),
            ])
    lines = own + others
    if sum((l.debit - l.credit for l in lines), Decimal(0)) != 0:
        return False
    Line.reconcile(lines)
    return True


def pay_invoice(invoice, amount, method, date=None):
    """The partner paid (part of) its invoice, as Tryton's Pay wizard
    records it (for scripts and the demo): posted by Tryton's invoicing,
    reconciled when paid in full, shown on the partner's statement."""
    pool = Pool()
    Line = pool.get('account.move.line')
    if not invoice.group_partner or invoice.state != 'posted':
        raise InvoiceError(gettext('scenic_group.msg_invoice_pay_state',
                invoice=invoice.rec_name))
    if amount is None or amount <= 0 or amount > invoice.amount_to_pay:
        raise InvoiceError(gettext('scenic_group.msg_invoice_pay_amount',
                invoice=invoice.rec_name, amount=amount,
                to_pay=invoice.amount_to_pay))
    date = date or area_today(invoice.company)
    reconcile, remainder = invoice.get_reconcile_lines_for_amount(
        amount, invoice.currency)
    lines = invoice.pay_invoice(amount, method, date,
        description=f"{invoice.number} payment")
    if not remainder:
        # Paid in full: the invoice goes to paid as the pay wizard does.
        Line.reconcile(reconcile + lines)
        # Reconciliation queues the invoice's processing; do it now so the
        # statement and the dunning run see it paid at once.
        invoice.__class__.process([invoice])


def setup_invoicing(company):
    """Give every fiscal year of the area the strict sequence its invoices
    are numbered with (one per year, shared by customer and supplier
    invoices and credit notes), where it has none."""
    pool = Pool()
    FiscalYear = pool.get('account.fiscalyear')
    InvoiceSequence = pool.get('account.fiscalyear.invoice_sequence')
    Strict = pool.get('ir.sequence.strict')
    ModelData = pool.get('ir.model.data')
    kind = ModelData.get_id('account_invoice', 'sequence_type_account_invoice')
    with Transaction().set_context(company=company.id):
        years = FiscalYear.search([('company', '=', company.id)])
        done = {s.fiscalyear for s in InvoiceSequence.search(
                [('company', '=', company.id)])}
        todo = [y for y in years if y not in done]
        if not todo:
            return
        sequences = Strict.create([{'name': f"Invoices {y.name}",
                    'sequence_type': kind, 'company': company.id,
                    'prefix': f"INV{y.start_date.year}-", 'padding': 5}
                for y in todo])
        InvoiceSequence.create([{
                    'company': company.id, 'fiscalyear': y.id,
                    **{f: s.id for f in ['out_invoice_sequence',
                            'out_credit_note_sequence',
                            'in_invoice_sequence',
                            'in_credit_note_sequence']}}
                for y, s in zip(todo, sequences)])


def setup_dunning(company, levels=(15, 30, 60)):
    """A dunning procedure with one level per number of days overdue, set as
    the default of the area and of its partners without one."""
    pool = Pool()
    Partner = pool.get('scenic.group.partner')
    Party = pool.get('party.party')
    Procedure = pool.get('account.dunning.procedure')
    Configuration = pool.get('account.configuration')
    with Transaction().set_context(company=company.id):
        procedure, = Procedure.create([{
                    'name': "Partner reminders",
                    'levels': [('create', [{
                                    'overdue': dt.timedelta(days=days)}
                                for days in levels])],
                    }])
        config = Configuration(1)
        config.default_dunning_procedure = procedure
        config.save()
        parties = [p.party for p in Partner.search(
                [('company', '=', company.id)])
            if not p.party.dunning_procedure]
        if parties:
            Party.write(parties, {'dunning_procedure': procedure.id})
    return procedure


class InvoiceMonthStart(PartnerMonth, ModelView):
    "Invoice the Month"
    __name__ = 'scenic.group.invoice_month.start'


class InvoiceMonth(Wizard):
    "Invoice the Month"
    __name__ = 'scenic.group.invoice_month'
    start = StateView('scenic.group.invoice_month.start',
        'scenic_group.invoice_month_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Invoice", 'invoice', 'tryton-ok', default=True),
            ])
    invoice = StateAction('account_invoice.act_invoice_out_form')

    def default_start(self, fields):
        return active_partner(self)

    def do_invoice(self, action):
        invoice = invoice_month(
            self.start.partner, self.start.year, self.start.month)
        return action, {'res_id': [invoice.id]}
