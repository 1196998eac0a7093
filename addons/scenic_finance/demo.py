"""The demo's ledger: the Chinese chart (in Chinese), fiscal years, the
posting rule, and a month of history posted day by day, one day settled
and one WeChat Pay settlement file imported with a mismatch to look at.

Called by scripts/load_demo.py (`accounting` instead of the universal
chart, `history` once the catalogue and gates exist)."""
import datetime as dt
import random
from decimal import Decimal

from trytond.pool import Pool
from trytond.transaction import Transaction, TransactionError

HISTORY_DAYS = 30
ORDERS_PER_DAY = 24


def _run(database, function):
    extras = {}
    while True:
        try:
            with Transaction().start(database, 0, **extras) as transaction:
                with transaction.set_context(language='zh_CN'):
                    result = function()
                transaction.commit()
                return result
        except TransactionError as error:
            error.fix(extras)


def accounting(database, company_id, years):
    "The Chinese chart with its Chinese names, fiscal years, the rule."
    def run():
        from .api import setup_area
        company = Pool().get('company.company')(company_id)
        with Transaction().set_context(company=company_id):
            setup_area(company, years=set(years), vat='vat_3_simplified',
                language='zh_CN')
    _run(database, run)


def history(database, company_id, gate_code='MAIN-IN'):
    """A month of sales, entries, refunds and expiries before today, posted;
    the oldest day settled; its WeChat Pay file imported with one trade's
    amount changed."""
    def run():
        from .history import History
        from .posting import area_today, post_days
        from .wallet import import_wallet_file, settlement_file
        pool = Pool()
        company = pool.get('company.company')(company_id)
        TicketType = pool.get('scenic.ticket.type')
        Channel = pool.get('scenic.channel')
        Gate = pool.get('scenic.gate')
        Slot = pool.get('scenic.time_slot')
        Day = pool.get('scenic.finance.day')
        with Transaction().set_context(company=company_id):
            if Day.search([], limit=1):
                return
            gate, = Gate.search([('code', '=', gate_code)], limit=1)
            channel, = Channel.search([('code', '=', 'web')], limit=1)
            slot = Slot.search([], order=[('date', 'ASC')], limit=1)[0]
            types = {t.code: t for t in TicketType.search([])}
            h = History(company, channel, slot, gate)
            rng = random.Random(9)
            today = area_today(company)
            first = today - dt.timedelta(HISTORY_DAYS)
            tz = h.slot.aware(h.slot.start_time).tzinfo
            methods = ['wechat', 'alipay', 'cash', 'unionpay', 'simulated']
            for n in range(HISTORY_DAYS):
                date = first + dt.timedelta(n)
                for i in range(ORDERS_PER_DAY):
                    code = rng.choice(['ADULT', 'ADULT', 'CHILD', 'SENIOR',
                            'COMBO', 'REENTRY2'])
                    ttype = types[code]
                    when = dt.datetime.combine(date,
                        dt.time(8 + i % 9, rng.randrange(60)), tzinfo=tz)
                    until = dt.datetime.combine(
                        date + dt.timedelta(rng.choice([1, 1, 2])),
                        dt.time(), tzinfo=tz)
                    order, tickets = h.sell(ttype, ttype.base_price, when,
                        provider=methods[i % len(methods)],
                        count=rng.choice([1, 1, 2, 3]), valid_until=until)
                    roll = rng.random()
                    later = when + dt.timedelta(hours=1)
                    if roll < 0.75:
                        h.enter(tickets, later)
                    elif roll < 0.82:
                        h.refund(order, tickets, later)
            pool.get('scenic.ticket').expire_tickets()
            post_days(company, until=today - dt.timedelta(1))
            oldest = Day.search([('date', '=', first)])
            Day.settle(oldest)
            text = settlement_file(company, first, 'wechat')
            lines = text.splitlines()
            if len(lines) > 2:
                # The provider's file says one trade differently.
                fields = lines[2].split(',')
                fields[2] = f"{Decimal(fields[2]) - 1:.2f}"
                lines[2] = ','.join(fields)
            import_wallet_file(company, 'wechat', '\n'.join(lines) + '\n')
    _run(database, run)
