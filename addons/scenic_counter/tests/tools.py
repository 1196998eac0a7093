"Helpers of the scenic_counter tests: an area with windows and a cashier."
import datetime as dt
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from scenic_common.idnumber import make_resident_id
from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_user, create_zone)

from trytond import config
from trytond.modules.account.tests import create_chart
from trytond.modules.company.tests import set_company
from trytond.pool import Pool

SHANGHAI = ZoneInfo('Asia/Shanghai')


def configure():
    """scenic_ticket's test configuration, and the providers the test
    windows' channel ('office') may take ([scenic_payment])."""
    configure_pii_key()
    config.set('scenic_payment', 'office',
        'cash unionpay simulated wechat')


def person(n):
    return {'name': f"游客{n}", 'id_number': make_resident_id(
            '110105', dt.date(1960, 1, 1) + dt.timedelta(days=97 * n % 18000),
            n % 999 + 1)}


def _account(company, kind):
    Account = Pool().get('account.account')
    account, = Account.search([
            ('company', '=', company.id),
            ('type.' + kind, '=', True),
            ('closed', '!=', True),
            ], limit=1)
    return account


def build_windows(capacity=50, tolerance='2'):
    """An area with an account chart, a box-office channel, two windows,
    cash/WeChat/UnionPay/simulated methods, a slot today and users."""
    pool = Pool()
    Channel = pool.get('scenic.channel')
    Point = pool.get('sale.point')
    Method = pool.get('sale.point.payment.method')
    TransferType = pool.get('sale.point.cash.transfer.type')
    Journal = pool.get('account.journal')
    Location = pool.get('stock.location')
    Sequence = pool.get('ir.sequence.strict')
    SequenceType = pool.get('ir.sequence.type')
    ModelData = pool.get('ir.model.data')
    company = create_area()
    with set_company(company):
        create_chart(company)
        cash_account = _account(company, 'receivable')
        other = _account(company, 'expense')
        revenue_journal, = Journal.search([('type', '=', 'revenue')],
            limit=1)
        cash_journal, = Journal.search([('type', '=', 'cash')], limit=1)
        storage, = Location.search([('code', '=', 'STO')])
        customer, = Location.search([('code', '=', 'CUS')])
        zone = create_zone(company)
        adult = create_ticket_type(company, 'ADULT', '100',
            zones=[('add', [zone.id])])
        child = create_ticket_type(company, 'CHILD', '50',
            category='child', zones=[('add', [zone.id])])
        channel, = Channel.create([{
                    'company': company.id, 'name': "Box Office",
                    'code': 'office', 'kind': 'box_office'}])
        today = dt.datetime.now(SHANGHAI).date()
        slot = create_slot(company, today, (0, 0), (23, 59),
            capacity=capacity, zone=zone)
        difference, float_type = TransferType.create([{
                    'company': company.id, 'name': "Shortage/overage",
                    'journal': cash_journal.id, 'account': other.id,
                    }, {
                    'company': company.id, 'name': "Float from safe",
                    'journal': cash_journal.id, 'account': other.id,
                    }])
        sequence_type = ModelData.get_id('sale_point', 'sequence_type_sale')
        points = []
        for n in (1, 2):
            sequence, = Sequence.create([{
                        'name': f"Window {n}", 'company': company.id,
                        'sequence_type': sequence_type,
                        'prefix': f'W{n}-'}])
            points.extend(Point.create([{
                            'name': f"Window {n}", 'company': company.id,
                            'journal': revenue_journal.id,
                            'sequence': sequence.id,
                            'storage_location': storage.id,
                            'customer_location': customer.id,
                            'scenic_kind': 'window',
                            'scenic_channel': channel.id,
                            'cash_tolerance': tolerance,
                            'difference_transfer_type': difference.id,
                            'float_transfer_type': float_type.id,
                            }]))
        methods = Method.create([{
                    'company': company.id, 'name': name,
                    'account': cash_account.id, 'cash': provider == 'cash',
                    'scenic_provider': provider,
                    } for name, provider in [
                    ("Cash", 'cash'), ("WeChat Pay", 'wechat'),
                    ("UnionPay", 'unionpay'), ("Simulated", 'simulated')]])
        cashier = create_user(company, 'cashier', 'cashier1')
        cashier2 = create_user(company, 'cashier', 'cashier2')
        supervisor = create_user(company, 'supervisor', 'super1')
    return SimpleNamespace(company=company, channel=channel, slot=slot,
        adult=adult, child=child, zone=zone, points=points,
        cash=methods[0], wechat=methods[1], unionpay=methods[2],
        simulated=methods[3], cashier=cashier, cashier2=cashier2,
        supervisor=supervisor, today=today)


class AnyTable(set):
    """For a doctest's hand-started transaction: trytond asks a transaction
    that locks a table late to restart with the lock (with_transaction
    retries for the unit tests); a doctest has no retry loop and runs
    alone, so it may take the locks where it stands."""

    def __contains__(self, table):
        return True
