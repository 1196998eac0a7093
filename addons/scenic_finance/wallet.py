"""Wallet reconciliation: the payment provider's daily settlement file
(WeChat Pay / Alipay style) imported as an account.statement, its lines
matched to scenic.payment by trade number.

The file is CSV, UTF-8, one header line then one line per trade:

    trade_no,time,amount,fee,refund
    T3f9c…,2025-03-01T10:02:11+08:00,106.00,0.64,0.00
    R81a2…,2025-03-01T15:40:00+08:00,0.00,0.00,106.00

`amount` is what the visitor paid, `refund` what went back (one of the
two is zero), `fee` the provider's fee on the trade. All trades are of one
local day. A statement line per trade moves it from the wallet's clearing
account (101201 …) to the bank account of the statement journal; one line
takes the day's fees to the fee account (5603 财务费用).
"""
import csv
import datetime as dt
import io
from decimal import Decimal, InvalidOperation

from trytond.i18n import gettext
from trytond.model import fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction

from .exceptions import ImportError_
from .posting import CENT, area_tz, day_bounds
from .rule import METHODS

COLUMNS = ['trade_no', 'time', 'amount', 'fee', 'refund']
WALLETS = [m for m in METHODS if m[0] in {'wechat', 'alipay', 'unionpay',
        'simulated'}]
MATCHES = [
    (None, ""),
    ('matched', "Matched"),
    ('mismatch', "Amount Differs"),
    ('unmatched', "No Such Payment"),
    ]


class ImportStatementStart(metaclass=PoolMeta):
    __name__ = 'account.statement.import.start'
    scenic_method = fields.Selection(
        [(None, "")] + WALLETS, "Wallet",
        states={
            'invisible': Eval('file_format') != 'scenic_wallet',
            'required': Eval('file_format') == 'scenic_wallet',
            },
        help="Whose settlement file this is.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.file_format.selection.append(
            ('scenic_wallet', "Wallet Settlement CSV"))


class ImportStatement(metaclass=PoolMeta):
    __name__ = 'account.statement.import'

    def parse_scenic_wallet(self):
        company = self.start.company
        method = self.start.scenic_method
        if not method:
            raise ImportError_(gettext('scenic_finance.msg_wallet_method'))
        data = self.start.file_
        text = data.decode('utf-8-sig') if isinstance(data, bytes) else data
        yield import_wallet_file(company, method, text, save=False)


class StatementLine(metaclass=PoolMeta):
    __name__ = 'account.statement.line'
    scenic_payment = fields.Many2One(
        'scenic.payment', "Ticket Payment", readonly=True)
    scenic_match = fields.Selection(MATCHES, "Match", readonly=True)
    scenic_expected = fields.Numeric(
        "Recorded Amount", digits=(16, 2), readonly=True,
        help="The amount of the matched payment as the ticket system "
        "recorded it.")


def _fail(number, message_id, **kwargs):
    raise ImportError_(gettext('scenic_finance.' + message_id,
            line=number, **kwargs))


def parse_file(text):
    "[(line number, trade_no, aware time, amount, fee, refund)]"
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    if not rows:
        _fail(1, 'msg_wallet_empty')
    header = [c.strip() for c in rows[0]]
    if header != COLUMNS:
        _fail(1, 'msg_wallet_columns', expected=','.join(COLUMNS),
            found=','.join(header))
    result = []
    seen = set()
    for number, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(COLUMNS):
            _fail(number, 'msg_wallet_width', count=len(row),
                expected=len(COLUMNS))
        trade_no, time_text = row[0].strip(), row[1].strip()
        if not trade_no:
            _fail(number, 'msg_wallet_trade_no')
        if trade_no in seen:
            _fail(number, 'msg_wallet_duplicate_trade', trade_no=trade_no)
        seen.add(trade_no)
        try:
            time = dt.datetime.fromisoformat(time_text)
        except ValueError:
            _fail(number, 'msg_wallet_time', value=time_text)
        if time.tzinfo is None:
            _fail(number, 'msg_wallet_time', value=time_text)
        amounts = []
        for name, value in zip(COLUMNS[2:], row[2:]):
            try:
                amount = Decimal(value.strip())
            except InvalidOperation:
                _fail(number, 'msg_wallet_amount', column=name, value=value)
            if (not amount.is_finite() or amount < 0
                    or amount != amount.quantize(CENT)):
                _fail(number, 'msg_wallet_amount', column=name, value=value)
            amounts.append(amount)
        amount, fee, refund = amounts
        if bool(amount) == bool(refund):
            _fail(number, 'msg_wallet_amount_or_refund')
        result.append((number, trade_no, time, amount, fee, refund))
    if not result:
        _fail(2, 'msg_wallet_empty')
    return result


def import_wallet_file(company, method, text, save=True):
    """Build (and by default save) the statement of one wallet file;
    refuse a bad file or a day already imported, naming the line."""
    pool = Pool()
    Statement = pool.get('account.statement')
    Line = pool.get('account.statement.line')
    Payment = pool.get('scenic.payment')
    Rule = pool.get('scenic.finance.rule')
    rule = Rule.for_company(company)
    journal = rule.statement_journal(method)
    rows = parse_file(text)
    tz = area_tz(company)
    date = rows[0][2].astimezone(tz).date()
    for number, _, time, *_ in rows:
        if time.astimezone(tz).date() != date:
            _fail(number, 'msg_wallet_other_day', date=date)
    name = f"{dict(METHODS)[method]} {date.isoformat()}"
    if Statement.search([('company', '=', company.id),
                ('journal', '=', journal.id), ('name', '=', name),
                ('state', '!=', 'cancelled')]):
        _fail(1, 'msg_wallet_day_imported', name=name)
    payments = {p.provider_reference: p for p in Payment.search([
                ('company', '=', company.id),
                ('provider_reference', 'in', [r[1] for r in rows]),
                ])}
    account = rule.method_account(method)
    lines = []
    fees = Decimal(0)
    for sequence, (number, trade_no, time, amount, fee, refund) in \
            enumerate(rows, 1):
        value = amount - refund
        payment = payments.get(trade_no)
        if not payment or payment.provider != method:
            match, expected = 'unmatched', None
        else:
            expected = (payment.amount if payment.kind == 'payment'
                else -payment.amount)
            match = 'matched' if expected == value else 'mismatch'
        lines.append(Line(sequence=sequence, number=trade_no, date=date,
                amount=value, account=account,
                description=trade_no,
                scenic_payment=payment if match != 'unmatched' else None,
                scenic_match=match, scenic_expected=expected))
        fees += fee
    if fees:
        lines.append(Line(sequence=len(lines) + 1, date=date,
                amount=-fees, account=rule.fee_account,
                description=gettext('scenic_finance.msg_wallet_fees',
                    method=dict(METHODS)[method], date=date)))
    statement = Statement(company=company, journal=journal, name=name,
        date=date, lines=lines,
        total_amount=sum((l.amount for l in lines), Decimal(0)),
        number_of_lines=len(lines))
    if save:
        statement.save()
    return statement


def settlement_file(company, date, method, fee_rate=Decimal('0.006')):
    """The settlement file a wallet would send for a day: the simulated
    provider's, from the payments recorded with that method."""
    Payment = Pool().get('scenic.payment')
    start, end = day_bounds(company, date)
    tz = area_tz(company)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(COLUMNS)
    for payment in Payment.search([
                ('company', '=', company.id), ('provider', '=', method),
                ('date', '>=', start), ('date', '<', end),
                ], order=[('date', 'ASC'), ('id', 'ASC')]):
        time = payment.date.replace(tzinfo=dt.timezone.utc).astimezone(tz)
        if payment.kind == 'payment':
            fee = (payment.amount * fee_rate).quantize(CENT)
            values = [payment.amount, fee, Decimal('0.00')]
        else:
            values = [Decimal('0.00'), Decimal('0.00'), payment.amount]
        writer.writerow([payment.provider_reference,
                time.isoformat(timespec='seconds'),
                *(f'{v:.2f}' for v in values)])
    return out.getvalue()
