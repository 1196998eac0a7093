"Helpers of the scenic_finance tests."
import datetime as dt
from contextlib import contextmanager
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.transaction import Transaction

from scenic_gate.tests.tools import build_area

from ..api import setup_area
from ..history import History

TZ = ZoneInfo('Asia/Shanghai')
YEAR = 2025


@contextmanager
def rolled_back():
    "Run a block and undo it: one hypothesis example each."
    transaction = Transaction()
    cursor = transaction.connection.cursor()
    cursor.execute('SAVEPOINT scenic_finance_example')
    try:
        yield
    finally:
        cursor.execute('ROLLBACK TO SAVEPOINT scenic_finance_example')
        cursor.execute('RELEASE SAVEPOINT scenic_finance_example')
        transaction.cache.clear()


def at(month, day, hour=10, minute=0):
    "An aware time in the area's timezone, in the test year."
    return dt.datetime(YEAR, month, day, hour, minute, tzinfo=TZ)


def finance_area(vat='vat_6'):
    """An area of scenic_gate's test tools with the Chinese chart, fiscal
    years around the test year, a posting rule and a History writer."""
    pool = Pool()
    Company = pool.get('company.company')
    Channel = pool.get('scenic.channel')
    TimeSlot = pool.get('scenic.time_slot')
    Gate = pool.get('scenic.gate')
    Box = pool.get('scenic.gate.box')
    TicketType = pool.get('scenic.ticket.type')
    area = build_area()
    company = Company(area.company)
    with set_company(company):
        rule = setup_area(company, years={YEAR, YEAR + 1}, vat=vat)
        # Created up front: Tryton creates them on the first move of a
        # period under a table lock, which a test transaction cannot retry.
        JournalPeriod = pool.get('account.journal.period')
        Period = pool.get('account.period')
        JournalPeriod.create([{'journal': rule.journal.id, 'period': p.id}
                for p in Period.search([('company', '=', company.id)])])
        box, = Box.create([{'company': company.id, 'name': "Finance Box"}])
        gate = Gate(area.gate_in)
        gate.box = box
        gate.save()
        history = History(company, Channel(area.channel),
            TimeSlot(area.slot), Gate(area.gate_in))
    types = {k: TicketType(getattr(area, k))
        for k in ['adult', 'multi', 'annual', 'count']}
    return SimpleNamespace(company=company, rule=rule, history=history,
        types=types, area=area)


def balances(company, codes=None):
    "Account code → credit − debit over posted moves."
    pool = Pool()
    Line = pool.get('account.move.line')
    result = {}
    for line in Line.search([('move.company', '=', company.id),
                ('move.state', '=', 'posted')]):
        code = line.account.code
        result[code] = result.get(code, 0) + line.credit - line.debit
    if codes:
        return {c: result.get(c, 0) for c in codes}
    return result


def post(company, until):
    from ..posting import post_days
    with Transaction().set_context(company=company.id):
        return post_days(company, until=until)
