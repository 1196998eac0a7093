"""Month and year close, and the month reports of deferred revenue.

An accountant closes a month with Finance → Close Month: it lists what
blocks (days not posted or not settled, statements not posted, draft
moves) and closes the Tryton period only when nothing does. Year close
balances the income-statement accounts to 3103 本年利润 with Tryton's
balance_non_deferral, closes the fiscal year and creates the next.
"""
import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

from sql.aggregate import Sum

from trytond.i18n import gettext
from trytond.model import ModelView, fields
from trytond.pool import Pool
from trytond.report import Report
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .exceptions import CloseError
from .posting import _money


def month_blockers(period):
    "What keeps a period from closing, as sentences for the accountant."
    pool = Pool()
    Day = pool.get('scenic.finance.day')
    Statement = pool.get('account.statement')
    Move = pool.get('account.move')
    company = period.company
    blockers = []
    days = {d.date: d for d in Day.search([
                ('company', '=', company.id),
                ('date', '>=', period.start_date),
                ('date', '<=', period.end_date)])}
    # Days before the area's first payment have nothing to post.
    from .posting import first_payment_date
    first = (first_payment_date(company)
        or period.end_date + dt.timedelta(1))
    date = max(period.start_date, min(first, min(days, default=first)))
    missing, unsettled = [], []
    while date <= period.end_date:
        if date not in days:
            missing.append(date)
        elif days[date].state != 'settled':
            unsettled.append(date)
        date += dt.timedelta(1)
    if missing:
        blockers.append(gettext('scenic_finance.msg_close_not_posted',
                days=_dates(missing)))
    if unsettled:
        blockers.append(gettext('scenic_finance.msg_close_not_settled',
                days=_dates(unsettled)))
    statements = Statement.search([
            ('company', '=', company.id),
            ('date', '>=', period.start_date),
            ('date', '<=', period.end_date),
            ('state', 'not in', ['posted', 'cancelled'])])
    if statements:
        blockers.append(gettext('scenic_finance.msg_close_statements',
                statements=', '.join(s.rec_name for s in statements[:5])))
    drafts = Move.search([('period', '=', period.id),
            ('state', '=', 'draft')])
    if drafts:
        blockers.append(gettext('scenic_finance.msg_close_draft_moves',
                count=len(drafts)))
    return blockers


def _dates(dates):
    text = ', '.join(d.isoformat() for d in dates[:5])
    if len(dates) > 5:
        text += f" … ({len(dates)})"
    return text


def close_month(period):
    blockers = month_blockers(period)
    if blockers:
        raise CloseError(gettext('scenic_finance.msg_close_blocked',
                period=period.rec_name, blockers='\n'.join(blockers)))
    Period = Pool().get('account.period')
    Period.close([Period(period.id)])


def close_year(fiscalyear):
    """Balance the income statement to 3103, close the year (its months
    must be closed already) and create the next one."""
    pool = Pool()
    Journal = pool.get('account.journal')
    Period = pool.get('account.period')
    Account = pool.get('account.account')
    Move = pool.get('account.move')
    FiscalYear = pool.get('account.fiscalyear')
    BalanceNonDeferral = pool.get(
        'account.fiscalyear.balance_non_deferral', type='wizard')
    from .api import create_fiscalyear
    company = fiscalyear.company
    open_ = Period.search([('fiscalyear', '=', fiscalyear.id),
            ('type', '=', 'standard'), ('state', '=', 'open')])
    if open_:
        raise CloseError(gettext('scenic_finance.msg_close_year_open',
                periods=', '.join(p.rec_name for p in open_)))
    journals = Journal.search([('type', '=', 'situation')], limit=1)
    journal = journals[0] if journals else Journal.create([{
                'name': "Closing", 'code': 'CLO', 'type': 'situation'}])[0]
    closing, = Period.create([{
                'name': f"{fiscalyear.name} 结账", 'type': 'adjustment',
                'start_date': fiscalyear.end_date,
                'end_date': fiscalyear.end_date,
                'fiscalyear': fiscalyear.id}])
    profit, = Account.search([('company', '=', company.id),
            ('code', '=', '3103')])
    session_id, _, _ = BalanceNonDeferral.create()
    wizard = BalanceNonDeferral(session_id)
    wizard.start.fiscalyear = fiscalyear
    wizard.start.journal = journal
    wizard.start.period = closing
    wizard.start.credit_account = profit
    wizard.start.debit_account = profit
    move = wizard.create_move()
    BalanceNonDeferral.delete(session_id)
    if move:
        Move.post([move])
    Period.close([closing])
    FiscalYear.close([fiscalyear])
    year = fiscalyear.end_date.year + 1
    if not FiscalYear.search([('company', '=', company.id),
                ('start_date', '=', dt.date(year, 1, 1))]):
        create_fiscalyear(company, year)
    return move


class CloseMonthStart(ModelView):
    "Close Month"
    __name__ = 'scenic.finance.close_month.start'
    period = fields.Many2One('account.period', "Period", required=True,
        domain=[('state', '=', 'open'), ('type', '=', 'standard')])
    blockers = fields.Text("What Blocks", readonly=True)

    @fields.depends('period')
    def on_change_period(self):
        self.blockers = ('\n'.join(month_blockers(self.period))
            if self.period else None)


class CloseMonth(Wizard):
    "Close Month"
    __name__ = 'scenic.finance.close_month'
    start = StateView('scenic.finance.close_month.start',
        'scenic_finance.close_month_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Close", 'close', 'tryton-ok', default=True),
            ])
    close = StateTransition()

    def transition_close(self):
        close_month(self.start.period)
        return 'end'


class CloseYearStart(ModelView):
    "Close Year"
    __name__ = 'scenic.finance.close_year.start'
    fiscalyear = fields.Many2One('account.fiscalyear', "Fiscal Year",
        required=True, domain=[('state', '=', 'open')])


class CloseYear(Wizard):
    "Close Year"
    __name__ = 'scenic.finance.close_year'
    start = StateView('scenic.finance.close_year.start',
        'scenic_finance.close_year_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Close", 'close', 'tryton-ok', default=True),
            ])
    close = StateTransition()

    def transition_close(self):
        close_year(self.start.fiscalyear)
        return 'end'


# --- reports -----------------------------------------------------------------

def _month(date):
    return date.replace(day=1)


def rollforward(company, start, end):
    """Per month: opening + received − earned − refunded = closing of the
    deferred revenue account, from the posted batches' moves."""
    pool = Pool()
    Rule = pool.get('scenic.finance.rule')
    Batch = pool.get('scenic.finance.batch')
    line = pool.get('account.move.line').__table__()
    rule = Rule.for_company(company)
    from .settlement import deferred_balance
    cursor = Transaction().connection.cursor()
    months = defaultdict(lambda: {'received': Decimal(0),
            'earned': Decimal(0), 'refunded': Decimal(0)})
    for batch in Batch.search([('company', '=', company.id),
                ('date', '>=', start), ('date', '<=', end),
                ('move', '!=', None)]):
        cursor.execute(*line.select(Sum(line.credit - line.debit),
                where=(line.move == batch.move.id)
                & (line.account == rule.deferred_account.id)))
        amount = _money(cursor.fetchone()[0])
        key = {'receipts': 'received', 'recognition': 'earned',
            'refunds': 'refunded'}[batch.kind]
        months[_month(batch.date)][key] += abs(amount)
    result = []
    month = _month(start)
    while month <= end:
        opening = deferred_balance(company, month - dt.timedelta(1))
        values = months[month]
        closing = (opening + values['received'] - values['earned']
            - values['refunded'])
        result.append({'month': month, 'opening': opening, **values,
                'closing': closing})
        month = (month + dt.timedelta(32)).replace(day=1)
    return result


def revenue_by_channel(company, start, end):
    "Revenue earned per month, channel and ticket type."
    pool = Pool()
    recognition = pool.get('scenic.finance.recognition').__table__()
    Channel = pool.get('scenic.channel')
    TicketType = pool.get('scenic.ticket.type')
    cursor = Transaction().connection.cursor()
    cursor.execute(*recognition.select(
            recognition.date, recognition.channel, recognition.ticket_type,
            Sum(recognition.amount),
            where=(recognition.company == company.id)
            & (recognition.date >= start) & (recognition.date <= end),
            group_by=[recognition.date, recognition.channel,
                recognition.ticket_type]))
    sums = defaultdict(Decimal)
    for date, channel, ttype, amount in cursor.fetchall():
        if isinstance(date, str):
            date = dt.date.fromisoformat(date)
        sums[(_month(date), channel, ttype)] += _money(amount)
    return [{'month': m, 'channel': Channel(c).rec_name,
            'ticket_type': TicketType(t).rec_name, 'revenue': a}
        for (m, c, t), a in sorted(sums.items())]


def _csv(rows):
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue().encode('utf-8')


class RollForwardCSV(Report):
    "Deferred revenue roll-forward per month (CSV)"
    __name__ = 'scenic.finance.rollforward.csv'

    @classmethod
    def execute(cls, ids, data):
        FiscalYear = Pool().get('account.fiscalyear')
        year = FiscalYear(ids[0])
        rows = rollforward(year.company, year.start_date, year.end_date)
        return ('csv', _csv(rows), False, f'rollforward-{year.name}')


class RevenueCSV(Report):
    "Revenue by channel and ticket type per month (CSV)"
    __name__ = 'scenic.finance.revenue.csv'

    @classmethod
    def execute(cls, ids, data):
        FiscalYear = Pool().get('account.fiscalyear')
        year = FiscalYear(ids[0])
        rows = revenue_by_channel(
            year.company, year.start_date, year.end_date)
        return ('csv', _csv(rows), False, f'revenue-{year.name}')
