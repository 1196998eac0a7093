"""Daily settlement (日结): what a posted day sold, refunded, earned and
took in, per channel, payment method, ticket type and cashier; finance
settles a day once its money matches the posted moves, then it is
read-only."""
import csv
import io
import shutil
from decimal import Decimal

from sql import Literal, Null
from sql.aggregate import Count, Sum
from sql.conditionals import Coalesce

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Unique, Workflow, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.report import Report
from trytond.transaction import Transaction

from scenic_ticket.area import CompanyMixin

from .exceptions import SettlementError
from . import posting
from .posting import _money
from .rule import METHODS

STATES = [
    ('posted', "Posted"),
    ('settled', "Settled"),
    ]
_amount = dict(digits=(16, 2), readonly=True)


class Day(CompanyMixin, Workflow, ModelSQL, ModelView):
    "Daily Settlement"
    __name__ = 'scenic.finance.day'
    date = fields.Date("Date", required=True, readonly=True)
    state = fields.Selection(STATES, "State", required=True, readonly=True)
    batches = fields.One2Many(
        'scenic.finance.batch', 'day', "Posting Batches", readonly=True)
    lines = fields.One2Many(
        'scenic.finance.day.line', 'day', "Lines", readonly=True)
    money_in = fields.Numeric("Money In", **_amount)
    money_out = fields.Numeric("Refunded", **_amount)
    revenue = fields.Numeric("Revenue Earned", **_amount)
    vat = fields.Numeric("Output VAT", **_amount)
    deferred_balance = fields.Numeric(
        "Deferred Balance", **_amount,
        help="What the area still owes visitors for unused tickets at the "
        "end of the day (2203).")
    cash_difference = fields.Numeric(
        "Cash Difference", **_amount,
        help="Cash counted minus expected at the box office's shifts "
        "posted with the day (to 1901 待处理财产损溢).")
    settled_by = fields.Many2One('res.user', "Settled By", readonly=True)
    # What the posting saw of scenic.payment (posting.Watermark): the
    # payments it covers are the ones it saw, less those an earlier
    # posting saw. Empty on days posted before (their payments name their
    # batch in finance_batch).
    payment_watermark = fields.Integer(
        "Payment Watermark", readonly=True,
        help="The highest payment id the posting read.")
    payment_snapshot = fields.Char(
        "Payment Snapshot", readonly=True,
        help="The PostgreSQL snapshot the posting read with.")
    payment_xid = fields.Char(
        "Posting Transaction", readonly=True,
        help="The PostgreSQL transaction that posted the day.")
    # The same for scenic.gate.scan: tickets earned whole are found by
    # the entries the posting saw (posting.Earning).
    scan_watermark = fields.Integer(
        "Scan Watermark", readonly=True,
        help="The highest gate scan id the posting read.")
    # And of scenic.ticket: a ticket is deferred by the first posting that
    # saw it and its order paid (tickets added to a paid order).
    ticket_watermark = fields.Integer(
        "Ticket Watermark", readonly=True,
        help="The highest ticket id the posting read.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('date_unique', Unique(t, t.company, t.date),
                'scenic_finance.msg_day_unique'),
            ]
        cls._order = [('date', 'DESC'), ('id', 'DESC')]
        cls._transitions |= {('posted', 'settled')}
        cls._buttons.update({
                'settle': {
                    'invisible': Eval('state') != 'posted',
                    'depends': ['state'],
                    },
                })

    @classmethod
    def default_state(cls):
        return 'posted'

    def get_rec_name(self, name):
        return f"{self.date}"

    @classmethod
    def check_modification(cls, mode, days, values=None, external=False):
        super().check_modification(
            mode, days, values=values, external=external)
        if mode in {'write', 'delete'}:
            for day in days:
                if day.state == 'settled':
                    raise SettlementError(gettext(
                            'scenic_finance.msg_day_settled',
                            day=day.rec_name))

    @classmethod
    @ModelView.button
    @Workflow.transition('settled')
    def settle(cls, days):
        for day in days:
            day.check_money()
        cls.write(days, {'settled_by': Transaction().user})

    def check_money(self):
        "Money in and out equal what the day's moves put on money accounts."
        pool = Pool()
        Rule = pool.get('scenic.finance.rule')
        MoveLine = pool.get('account.move.line')
        rule = Rule.for_company(self.company)
        accounts = {m.account.id for m in rule.methods}
        posted = Decimal(0)
        moves = [b.move.id for b in self.batches
            if b.kind in {'receipts', 'refunds'} and b.move]
        if moves:
            for line in MoveLine.search([
                        ('move', 'in', moves),
                        ('account', 'in', list(accounts)),
                        ]):
                posted += line.debit - line.credit
        expected = (self.money_in or 0) - (self.money_out or 0)
        if posted != expected:
            raise SettlementError(gettext(
                    'scenic_finance.msg_day_money_mismatch',
                    day=self.rec_name, expected=expected, posted=posted))

    @classmethod
    def _payment_cashier(cls, from_, payment, batch):
        """The FROM clause and the column naming who took the payments of
        a batch: whoever recorded them, unless a module knows better (the
        box office: the shift's cashier)."""
        return from_, payment.create_uid

    def compute_lines(self, sold=None):
        """Fill the settlement from the day's batches (called at posting).
        `sold`: (channel, ticket type) → [count, VAT] of the tickets
        earned whole that the receipts deferred (the posting's grouped
        read; read again when not given)."""
        pool = Pool()
        Line = pool.get('scenic.finance.day.line')
        Batch = pool.get('scenic.finance.batch')
        payment = pool.get('scenic.payment').__table__()
        order = pool.get('scenic.order').__table__()
        ticket = pool.get('scenic.ticket').__table__()
        deferral = pool.get('scenic.finance.ticket').__table__()
        recognition = pool.get('scenic.finance.recognition').__table__()
        cursor = Transaction().connection.cursor()
        batches = {b.kind: b.id for b in self.batches}
        rows = {}

        def row(channel, method=None, ttype=None, cashier=None):
            key = (channel, method, ttype, cashier)
            if key not in rows:
                rows[key] = {
                    'day': self.id, 'channel': channel, 'method': method,
                    'ticket_type': ttype, 'cashier': cashier,
                    'sold': 0, 'refunded': 0, 'used': 0, 'expired': 0,
                    'money_in': Decimal(0), 'money_out': Decimal(0),
                    'revenue': Decimal(0), 'vat': Decimal(0)}
            return rows[key]

        for kind, field in [('receipts', 'money_in'),
                ('refunds', 'money_out')]:
            if kind not in batches:
                continue
            batch = Batch(batches[kind])
            from_, cashier = self._payment_cashier(
                payment.join(order, condition=payment.order == order.id),
                payment, batch)
            # the day's payments and the late ones apart, each on its index
            for where in batch.payments_wheres(payment):
                cursor.execute(*from_.select(
                        order.channel, payment.provider, cashier,
                        Sum(payment.amount), where=where,
                        group_by=[order.channel, payment.provider, cashier]))
                for channel, method, cashier_, amount in cursor.fetchall():
                    row(channel, method, cashier=cashier_)[field] += _money(
                        amount)
        if sold is None and 'receipts' in batches:
            sold = self._sold_whole(Batch(batches['receipts']))
        for (channel, ttype), (count, vat) in (sold or {}).items():
            values = row(channel, ttype=ttype)
            values['sold'] += count
            values['vat'] += vat
        # The tickets with a row: cards deferred, every ticket refunded.
        for kind, field, sign in [('receipts', 'sold', 1),
                ('refunds', 'refunded', -1)]:
            if kind not in batches:
                continue
            column = (deferral.receipt if kind == 'receipts'
                else deferral.refund)
            cursor.execute(*deferral.join(ticket,
                    condition=deferral.ticket == ticket.id).join(order,
                    condition=ticket.order == order.id).select(
                    order.channel, ticket.ticket_type, Count(Literal(1)),
                    Sum(deferral.vat),
                    where=column == batches[kind],
                    group_by=[order.channel, ticket.ticket_type]))
            for channel, ttype, count, vat in cursor.fetchall():
                values = row(channel, ttype=ttype)
                values[field] += count
                values['vat'] += sign * _money(vat)
        # A refund after use reverses revenue in the refunds' batch.
        earning = [batches[k] for k in ['recognition', 'refunds']
            if k in batches]
        if earning:
            cursor.execute(*recognition.select(
                    recognition.channel, recognition.ticket_type,
                    recognition.kind, Sum(recognition.quantity),
                    Sum(recognition.amount),
                    where=recognition.batch.in_(earning),
                    group_by=[recognition.channel, recognition.ticket_type,
                        recognition.kind]))
            for channel, ttype, kind, count, amount in cursor.fetchall():
                values = row(channel, ttype=ttype)
                if kind == 'use':
                    values['used'] += count
                elif kind == 'expiry':
                    values['expired'] += count
                values['revenue'] += _money(amount)
        Line.create(list(rows.values()))
        totals = {f: sum((r[f] for r in rows.values()), Decimal(0))
            for f in ['money_in', 'money_out', 'revenue', 'vat']}
        totals['deferred_balance'] = deferred_balance(
            self.company, self.date)
        self.__class__.write([self], totals)

    def _sold_whole(self, batch):
        "(channel, ticket type) → [count, VAT] of the whole tickets deferred."
        pool = Pool()
        Rule = pool.get('scenic.finance.rule')
        Coverage = posting.Coverage
        earning = posting.Earning(self)
        rate = Rule.for_company(self.company).vat_rate
        orders = Coverage(self, earning.previous).select('payment', 'order')
        sold = {}
        for channel, ttype, price, count in earning.groups(orders)[0]:
            values = sold.setdefault((channel, ttype), [0, Decimal(0)])
            values[0] += count
            values[1] += count * posting.split_vat(_money(price), rate)[1]
        return sold

    def report_summary(self):
        """What the printed settlement shows: per payment method the money
        expected (the day's payments less refunds), posted to its money
        account, settled (the wallet's statement of the day, the cash
        counted) and the provider's fees; the cash differences; the
        moves posted."""
        pool = Pool()
        Rule = pool.get('scenic.finance.rule')
        MoveLine = pool.get('account.move.line')
        StatementLine = pool.get('account.statement.line')
        rule = Rule.for_company(self.company)
        names = dict(pool.get('scenic.finance.rule.method').fields_get(
                ['method'])['method']['selection'])
        expected = {}
        for line in self.lines:
            if line.method:
                expected[line.method] = (expected.get(line.method, 0)
                    + (line.money_in or 0) - (line.money_out or 0))
        moves = [b.move for b in self.batches if b.move]
        money_moves = [b.move.id for b in self.batches
            if b.kind in {'receipts', 'refunds'} and b.move]
        methods = []
        for method_line in rule.methods:
            method = method_line.method
            posted = sum((l.debit - l.credit for l in MoveLine.search([
                            ('move', 'in', money_moves),
                            ('account', '=', method_line.account.id),
                            ])), Decimal(0)) if money_moves else Decimal(0)
            settled = fees = None
            if method == 'cash':
                settled = (expected.get(method, Decimal(0))
                    + (self.cash_difference or 0))
            elif method_line.statement_journal:
                lines = StatementLine.search([
                        ('statement.journal', '=',
                            method_line.statement_journal.id),
                        ('statement.date', '=', self.date),
                        ('statement.state', '!=', 'cancelled'),
                        ])
                if lines:
                    settled = sum((l.amount for l in lines
                            if l.account == method_line.account), Decimal(0))
                    fees = -sum((l.amount for l in lines
                            if l.account == rule.fee_account), Decimal(0))
            if not (expected.get(method) or posted or settled or fees):
                continue
            methods.append({
                    'name': names.get(method, method),
                    'expected': expected.get(method, Decimal(0)),
                    'posted': posted,
                    'settled': settled,
                    'fees': fees or Decimal(0),
                    'difference': ((settled if settled is not None
                            else posted) - expected.get(method, Decimal(0))),
                    })
        cash = []
        if rule.cash_pending_account:
            for batch in self.batches:
                if batch.kind == 'cash' and batch.move:
                    cash += [{'description': l.description or '',
                            'debit': l.debit, 'credit': l.credit}
                        for l in batch.move.lines
                        if l.account == rule.cash_pending_account]
        # Names as the user reads them (translated selections).
        Batch = pool.get('scenic.finance.batch')
        kinds = dict(Batch.fields_get(['kind'])['kind']['selection'])
        states = dict(self.fields_get(['state'])['state']['selection'])
        return {
            'state': states.get(self.state, self.state),
            'methods': methods,
            'cash': cash,
            'moves': [{'kind': kinds.get(b.kind, b.kind),
                    'number': b.move.number or '', 'date': b.move.date,
                    'amount': b.amount or Decimal(0), 'late': b.late or 0}
                for b in self.batches if b.move],
            'move_count': len(moves),
            }

    @classmethod
    def to_csv(cls, days):
        "The settlement lines of days as CSV text (UTF-8, header first)."
        out = io.StringIO()
        writer = csv.writer(out)
        names = ['date', 'channel', 'method', 'ticket_type', 'cashier',
            'sold', 'refunded', 'used', 'expired', 'money_in', 'money_out',
            'revenue', 'vat']
        writer.writerow(names)
        methods = dict(METHODS)
        for day in days:
            for line in day.lines:
                writer.writerow([day.date.isoformat(),
                        line.channel.code if line.channel else '',
                        methods.get(line.method, line.method or ''),
                        line.ticket_type.code if line.ticket_type else '',
                        line.cashier.login if line.cashier else '',
                        line.sold, line.refunded, line.used, line.expired,
                        line.money_in, line.money_out, line.revenue,
                        line.vat])
        return out.getvalue()


def deferred_balance(company, date):
    "Credit balance of the deferred revenue account at the end of date."
    pool = Pool()
    Rule = pool.get('scenic.finance.rule')
    line = pool.get('account.move.line').__table__()
    move = pool.get('account.move').__table__()
    rule = Rule.for_company(company)
    cursor = Transaction().connection.cursor()
    cursor.execute(*line.join(move, condition=line.move == move.id).select(
            Coalesce(Sum(line.credit - line.debit), 0),
            where=(line.account == rule.deferred_account.id)
            & (move.date <= date) & (move.company == company.id)))
    return _money(cursor.fetchone()[0])


class DayLine(ModelSQL, ModelView):
    "Daily Settlement Line"
    __name__ = 'scenic.finance.day.line'
    day = fields.Many2One(
        'scenic.finance.day', "Day", required=True, readonly=True,
        ondelete='CASCADE')
    channel = fields.Many2One('scenic.channel', "Channel", readonly=True)
    method = fields.Selection(
        [(None, "")] + METHODS, "Payment Method", readonly=True)
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", readonly=True)
    cashier = fields.Many2One('res.user', "Cashier", readonly=True)
    sold = fields.Integer("Sold", readonly=True)
    refunded = fields.Integer("Refunded", readonly=True)
    used = fields.Integer("Used", readonly=True)
    expired = fields.Integer("Expired", readonly=True)
    money_in = fields.Numeric("Money In", **_amount)
    money_out = fields.Numeric("Refunded Money", **_amount)
    revenue = fields.Numeric("Revenue", **_amount)
    vat = fields.Numeric("VAT", **_amount)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('day')


class SettlementReport(Report):
    """The printable daily settlement (ODT template; PDF when LibreOffice
    is there to convert it, else the ODT)."""
    __name__ = 'scenic.finance.day.report'

    @classmethod
    def get_context(cls, records, header, data):
        context = super().get_context(records, header, data)
        context['summaries'] = {d.id: d.report_summary() for d in records}
        return context

    @classmethod
    def convert(cls, report, data, **kwargs):
        # Without LibreOffice, the ODT itself rather than an error.
        if shutil.which('soffice') or shutil.which('libreoffice'):
            return super().convert(report, data, **kwargs)
        return 'odt', data


class SettlementCSV(Report):
    "Daily settlement as CSV"
    __name__ = 'scenic.finance.day.csv'

    @classmethod
    def execute(cls, ids, data):
        Day = Pool().get('scenic.finance.day')
        days = Day.browse(ids)
        name = 'settlement-' + '_'.join(str(d.date) for d in days[:3])
        return ('csv', Day.to_csv(days).encode('utf-8'), False, name)
