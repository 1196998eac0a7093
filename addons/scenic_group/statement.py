"""The monthly statement of account of a partner: opening balance, its
orders, admissions, refunds, no-show credits, payments and deposits of the
month, and the closing balance."""
import calendar
import datetime as dt
from decimal import Decimal

from trytond.model import ModelView, fields
from trytond.pool import Pool
from trytond.report import Report
from trytond.transaction import Transaction
from trytond.wizard import Button, StateReport, StateView, Wizard


def month_bounds(year, month):
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    return first, last


def statement(partner, year, month):
    "The statement as data (amounts are Decimal)."
    pool = Pool()
    Entry = pool.get('scenic.group.entry')
    Order = pool.get('scenic.order')
    first, last = month_bounds(year, month)
    opening = Entry.balance(partner, until=first - dt.timedelta(days=1))
    entries = Entry.search([
            ('partner', '=', partner.id),
            ('date', '>=', first), ('date', '<=', last),
            ], order=[('date', 'ASC'), ('id', 'ASC')])
    totals = {}
    for entry in entries:
        totals[entry.kind] = totals.get(entry.kind, Decimal(0)) + entry.amount
    orders = Order.search([
            ('group_partner', '=', partner.id),
            ('visit_date', '>=', first), ('visit_date', '<=', last),
            ('state', 'not in', ['reserved', 'expired', 'cancelled']),
            ], order=[('visit_date', 'ASC'), ('id', 'ASC')])
    booked = sum(t.persons for o in orders for t in o.tickets
        if t.state in ('valid', 'used'))
    admitted = sum(t.persons for o in orders for t in o.tickets
        if t.state == 'used')
    totals = {k: v.quantize(Decimal('0.01')) for k, v in totals.items()}
    closing = opening + sum(totals.values(), Decimal(0))
    return {
        'partner': partner, 'year': year, 'month': month,
        'first': first, 'last': last,
        'currency': partner.company.currency.code,
        'opening': opening, 'closing': closing,
        'entries': entries, 'totals': totals,
        'orders': orders, 'persons_booked': booked,
        'persons_admitted': admitted,
        'kinds': dict(Entry.fields_get(['kind'])['kind']['selection']),
        }


class PartnerMonth:
    "A partner and a month, last month by default (start of a wizard)."
    __slots__ = ()
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True)
    year = fields.Integer("Year", required=True)
    month = fields.Integer("Month", required=True)

    @staticmethod
    def default_year():
        return _last_month()[0]

    @staticmethod
    def default_month():
        return _last_month()[1]


def _last_month():
    # The context company's date (Tryton's rule), not the server's.
    today = Pool().get('ir.date').today()
    last = today.replace(day=1) - dt.timedelta(days=1)
    return last.year, last.month


def active_partner(wizard):
    "The start values of a wizard run on a partner: that partner."
    if (Transaction().context.get('active_model')
            == 'scenic.group.partner' and wizard.record):
        return {'partner': wizard.record.id}
    return {}


class StatementStart(PartnerMonth, ModelView):
    "Monthly Statement"
    __name__ = 'scenic.group.statement.start'


class StatementWizard(Wizard):
    "Monthly Statement"
    __name__ = 'scenic.group.statement'
    start = StateView('scenic.group.statement.start',
        'scenic_group.statement_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Print", 'print_', 'tryton-print', default=True),
            ])
    print_ = StateReport('scenic.group.statement.report')

    def default_start(self, fields):
        return active_partner(self)

    def do_print_(self, action):
        return action, {
            'partner': self.start.partner.id,
            'year': self.start.year, 'month': self.start.month,
            }


class StatementReport(Report):
    __name__ = 'scenic.group.statement.report'

    @classmethod
    def get_context(cls, records, header, data):
        Partner = Pool().get('scenic.group.partner')
        context = super().get_context(records, header, data)
        context['statement'] = statement(
            Partner(data['partner']), data['year'], data['month'])
        context['money'] = lambda v: f"{v:,.2f}"
        return context
