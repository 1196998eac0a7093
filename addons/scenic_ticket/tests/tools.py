"Helpers shared by the scenic_ticket tests and the modules built on it."
import datetime as dt
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace
from unittest import mock

from lxml import etree

from trytond import config
from trytond.modules.company.tests import create_company
from trytond.modules.currency.tests import create_currency
from trytond.pool import Pool
from trytond.pyson import PYSONDecoder
from trytond.tests.test_tryton import with_transaction
from trytond.transaction import Transaction

TEST_PII_KEY = 'test-only-pii-key-0123456789abcdef-0123456789'


def configure_pii_key(key=TEST_PII_KEY):
    """The tests' key, in a demo-like configuration: the simulated payment
    provider is allowed for every channel."""
    for section in ('scenic_payment', 'scenic_booking'):
        if config.has_section(section):     # whatever a test set
            config.remove_section(section)
    for section in ('scenic', 'scenic_payment', 'scenic_booking'):
        if not config.has_section(section):
            config.add_section(section)
    config.set('scenic', 'pii_key', key)
    config.set('scenic', 'demo', 'True')
    config.set('scenic_payment', 'default', 'simulated')
    # the rush and limit tests hold many unpaid orders of one phone and one
    # address; the tests of the hold limits set their own
    config.set('scenic_booking', 'max_holds_phone', '100000')
    config.set('scenic_booking', 'max_unpaid_percent', '100')
    config.set('scenic_booking', 'max_holds_client', '100000')


def create_area(name="Cloud Mountain Scenic Area"):
    "A scenic area (company) in CNY with its Shanghai timezone."
    Currency = Pool().get('currency.currency')
    cny = Currency.search([('code', '=', 'CNY')])
    cny = cny[0] if cny else create_currency('CNY')
    company = create_company(name=name, currency=cny)
    company.timezone = 'Asia/Shanghai'
    company.save()
    return company


def create_zone(company, code='MAIN', daily_max=10080, instant_max=5600,
        parent=None):
    Zone = Pool().get('scenic.zone')
    zone, = Zone.create([{
                'company': company.id, 'name': code.title(), 'code': code,
                'daily_max': daily_max, 'instant_max': instant_max,
                'parent': parent.id if parent else None,
                }])
    return zone


def create_ticket_type(company, code='ADULT', price='100', **values):
    TicketType = Pool().get('scenic.ticket.type')
    values = {
        'company': company.id, 'name': code.title(), 'code': code,
        'category': 'adult', 'base_price': Decimal(price), **values}
    ttype, = TicketType.create([values])
    return ttype


def create_slot(company, date, start=(9, 0), end=(9, 30), capacity=50,
        zone=None):
    TimeSlot = Pool().get('scenic.time_slot')
    slot, = TimeSlot.create([{
                'company': company.id, 'date': date,
                'start_time': dt.time(*start), 'end_time': dt.time(*end),
                'capacity': capacity, 'zone': zone.id if zone else None,
                }])
    return slot


def create_user(company, role, login=None):
    """A user of an area (a company or its id) with one of the roles of
    scenic_ticket (role_<role>), to test access rights."""
    pool = Pool()
    User = pool.get('res.user')
    ModelData = pool.get('ir.model.data')
    company = getattr(company, 'id', company)
    role_id = ModelData.get_id('scenic_ticket', f'role_{role}')
    user, = User.create([{
                'name': role.title(), 'login': login or role,
                'companies': [('add', [company])],
                'company': company,
                'roles': [('create', [{'role': role_id}])],
                }])
    return user


@contextmanager
def frozen_clock(instant):
    """Tryton's ir.date.today() as at `instant` (aware) on a UTC server.

    What Scenic reads of "today" goes through ir.date (area_today), so a
    test can put the area past its midnight while the server's date, in
    UTC, is still the day before."""
    from trytond.ir import date as ir_date

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return instant.astimezone(tz or dt.timezone.utc).replace(
                tzinfo=tz)

    with mock.patch.object(ir_date, 'datetime',
            SimpleNamespace(datetime=Frozen)):
        yield


@contextmanager
def savepoint():
    """Undo what a refused call wrote, as an RPC call's rollback does.

    Tests run in one transaction; this shows a refusal leaves nothing.
    """
    transaction = Transaction()
    cursor = transaction.connection.cursor()
    cursor.execute('SAVEPOINT scenic_test')
    try:
        yield
    except Exception:
        cursor.execute('ROLLBACK TO SAVEPOINT scenic_test')
        transaction.cache.clear()
        raise
    finally:
        cursor.execute('RELEASE SAVEPOINT scenic_test')


class ViewPYSONTestMixin:
    """The module's views carry PYSON that the clients can decode.

    sao decodes `visual` and `states` as encoded PYSON: an expression
    written as text in the XML (trytond encodes it only when it comes from
    `view_attributes` or a field) leaves the list empty in the browser."""

    @with_transaction()
    def test_view_pyson_attributes(self):
        "Every visual and states attribute of the views is encoded PYSON"
        pool = Pool()
        View = pool.get('ir.ui.view')
        decoder = PYSONDecoder()
        for view in View.search([
                    ('module', '=', self.module),
                    ('inherit', '=', None), ('model', '!=', None)]):
            Model = pool.get(view.model)
            arch = Model.fields_view_get(view.id)['arch']
            for element in etree.fromstring(arch).iter():
                for attribute in ('visual', 'states'):
                    value = element.get(attribute)
                    if not value:
                        continue
                    with self.subTest(view=view.name, tag=element.tag,
                            attribute=attribute):
                        try:
                            decoder.decode(value)
                        except ValueError:
                            self.fail(f"{view.name}: {element.tag} "
                                f"{attribute}={value!r} is not encoded "
                                "PYSON (set it in view_attributes)")
