"Helpers of the scenic_gate tests: an area with gates, tickets, cards, boxes."
import datetime as dt
import itertools
import uuid
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock
from zoneinfo import ZoneInfo

from scenic_common.idnumber import RESIDENT_ID, make_resident_id
from scenic_ticket import reservation
from scenic_ticket.dbtools import from_db
from scenic_ticket.slot import area_timezone
from scenic_ticket.tests.tools import (
    create_area, create_slot, create_ticket_type, create_zone)

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.transaction import Transaction

SHANGHAI = ZoneInfo('Asia/Shanghai')
_people = itertools.count(1)
_uids = itertools.count(0x04A10000)
_areas = itertools.count(1)


def new_id():
    n = next(_people)
    return make_resident_id(
        '310104', dt.date(1950, 1, 1) + dt.timedelta(days=n % 20000),
        n % 999 + 1)


def new_uid():
    return f'{next(_uids):08X}'


def area_today():
    return dt.datetime.now(SHANGHAI).date()


def area_time(area, hour=12, minute=0):
    """A time on the day of the area's slot, in the area's time zone.

    Scans stamped from it fall on the slot's day whenever the test runs,
    also when a run spans local midnight (16:00 UTC for Shanghai), which
    stamps taken from the clock ("now minus 9 minutes") do not.
    """
    return dt.datetime.combine(area.day, dt.time(hour, minute), SHANGHAI)


@contextmanager
def slot_day(area):
    """The gate module's clock, for what it computes from "now" without
    taking it as an argument (the zones' people inside today, the gate
    API's sync), runs on but does not leave the day of the area's slot.

    A test that stamps its scans on the slot's day reads them back the same
    whenever it runs, also across local midnight.
    """
    from .. import scan as scan_module
    from .. import sync as sync_module
    snapshot = sync_module.snapshot
    last = area_time(area, 23, 58)

    def clock():
        return min(dt.datetime.now(dt.timezone.utc), last)

    def snapshot_now(company, since_text, database_name, now=None):
        return snapshot(company, since_text, database_name,
            now=now or clock())

    def area_today(company):
        return clock().astimezone(area_timezone(company)).date()
    with mock.patch.object(scan_module, 'area_today', area_today), \
            mock.patch.object(sync_module, 'snapshot', snapshot_now):
        yield


def build_area(name=None, instant_max=5600):
    """A scenic area with a zone, ticket and card types, gates, a channel
    and a slot today; returns the ids in a namespace."""
    pool = Pool()
    Gate = pool.get('scenic.gate')
    Channel = pool.get('scenic.channel')
    n = next(_areas)
    company = create_area(name or f"Gate Test Area {n}")
    # Product codes are unique across areas: suffix the type codes.
    codes = {k: f'{k}-{n}' for k in [
            'ADULT', 'MULTI', 'GROUP5', 'ANNUAL', 'COUNT10']}
    with set_company(company):
        zone = create_zone(company, 'MAIN', daily_max=max(instant_max, 10080),
            instant_max=instant_max)
        museum = create_zone(company, 'MUSEUM', daily_max=800,
            instant_max=300, parent=zone)
        adult = create_ticket_type(company, codes['ADULT'], '100',
            zones=[('add', [zone.id])])
        multi = create_ticket_type(company, codes['MULTI'], '150',
            entry_mode='multiple', entries_allowed=3, real_name=False,
            id_limit=0)
        group = create_ticket_type(company, codes['GROUP5'], '400',
            category='group', persons=5, real_name=False, id_limit=0)
        annual = create_ticket_type(company, codes['ANNUAL'], '300',
            category='annual_card', validity='days_from_first_use',
            validity_days=365, entry_mode='unlimited',
            reentry_binding='face', real_name=False, id_limit=0)
        count = create_ticket_type(company, codes['COUNT10'], '500',
            category='count_card', validity='days_from_first_use',
            validity_days=365, entry_mode='multiple', entries_allowed=10,
            real_name=False, id_limit=0)
        gate_in, gate_out, gate_museum = Gate.create([{
                    'company': company.id, 'code': 'MAIN-IN',
                    'name': "Main Entrance", 'zone': zone.id,
                    'direction': 'in', 'lanes': 4,
                    }, {
                    'company': company.id, 'code': 'MAIN-OUT',
                    'name': "Main Exit", 'zone': zone.id,
                    'direction': 'out', 'lanes': 2,
                    }, {
                    'company': company.id, 'code': 'MUSEUM',
                    'name': "Museum", 'zone': museum.id,
                    'direction': 'both', 'lanes': 1,
                    }])
        channel, = Channel.create([{
                    'company': company.id, 'name': "Box Office",
                    'code': 'office', 'kind': 'box_office'}])
        slot = create_slot(company, area_today(), (0, 0), (23, 59),
            capacity=1000)
    return SimpleNamespace(day=slot.date,
        company=company.id, zone=zone.id, museum=museum.id,
        adult=adult.id, multi=multi.id, group=group.id, annual=annual.id,
        count=count.id, gate_in=gate_in.id, gate_out=gate_out.id,
        gate_museum=gate_museum.id, channel=channel.id, slot=slot.id,
        codes=codes)


def sell(area, code='ADULT', quantity=1, persons=None):
    "Book and pay tickets of a type on today's slot; return their ids."
    pool = Pool()
    Channel = pool.get('scenic.channel')
    TimeSlot = pool.get('scenic.time_slot')
    Order = pool.get('scenic.order')
    channel = Channel(area.channel)
    slot = TimeSlot(area.slot)
    now = slot.aware(slot.start_time) - dt.timedelta(hours=1)
    real_name = code == 'ADULT'
    code = area.codes[code]
    if real_name:
        item = reservation.Item(ticket_type=code, visitors=[
                reservation.Visitor(name=f"Visitor {i}", id_type=RESIDENT_ID,
                    id_number=new_id(), field='v')
                for i in range(quantity)])
    else:
        item = reservation.Item(ticket_type=code, persons=persons)
    request = reservation.BookingRequest(slot=slot.id, items=[item],
        contact_name="Wang Fang", contact_phone='13800138000')
    with Transaction().set_context(company=area.company):
        order_id, _ = reservation.book(channel, request, str(uuid.uuid4()),
            now=now)
        order = Order(order_id)
        reservation.pay(order_id, 'simulated', order.total, now=now)
    return [t.id for t in sorted(Order(order_id).tickets, key=lambda t: t.id)]


def fill_gate_hashes(area=None):
    """What the cron does every minute: derive the missing gate hashes (of
    the area only, when given: other tests' areas stay as they are)."""
    return Pool().get('scenic.gate.hash').fill(
        companies=[area.company] if area else None)


def refund(ticket_id, now=None):
    Ticket = Pool().get('scenic.ticket')
    ticket = Ticket(ticket_id)
    reservation.cancel(ticket.order.id, now=now, by_back_office=True)


def issue_card(area, type_name='annual', holder=True, remaining=None,
        **values):
    pool = Pool()
    Card = pool.get('scenic.card')
    Visitor = pool.get('scenic.visitor')
    with Transaction().set_context(company=area.company):
        visitor = None
        if holder:
            visitor, = Visitor.create([{
                        'company': area.company, 'name': "Zhao Lei",
                        'id_number': new_id()}])
        now = dt.datetime.now(dt.timezone.utc).replace(
            tzinfo=None, microsecond=0)
        card, = Card.create([{
                    'company': area.company, 'number': new_uid(),
                    'ticket_type': getattr(area, type_name),
                    'holder': visitor.id if visitor else None,
                    'valid_from': now - dt.timedelta(days=1),
                    'valid_until': now + dt.timedelta(days=364),
                    'remaining': remaining, **values}])
    return SimpleNamespace(
        id=card.id, number=card.number, holder_hash=card.holder_hash)


def new_box(area, name="Box"):
    "A box with a fresh enrolment token: (box id, token)."
    Box = Pool().get('scenic.gate.box')
    with Transaction().set_context(company=area.company):
        box, = Box.create([{'company': area.company, 'name': name}])
        token, _ = box.new_enrolment_token()
    return box.id, token


def age_area(company_id, hours=1):
    """Make everything of an area look `hours` old, as if it had been set
    up before: an incremental sync then shows only what changes next."""
    pool = Pool()
    cursor = Transaction().connection.cursor()
    delta = dt.timedelta(hours=hours)
    for model, extra in [
            ('scenic.signing_key', []), ('scenic.ticket.type', []),
            ('scenic.gate.rule', []), ('scenic.zone', []),
            ('scenic.zone.headcount', []), ('scenic.gate', []),
            ('scenic.card', ['state_changed_at']),
            ('scenic.ticket', ['revoked_at']),
            ('scenic.order', ['paid_at']),
            ('scenic.ticket.usage', []), ('scenic.gate.hash', [])]:
        table = pool.get(model).__table__()
        columns = [getattr(table, n)
            for n in ['create_date', 'write_date'] + extra]
        cursor.execute(*table.select(table.id, *columns,
                where=table.company == company_id))
        for id_, *values in cursor.fetchall():
            values = [from_db(v) - delta if v else None for v in values]
            cursor.execute(*table.update(columns, values,
                    where=table.id == id_))
    Transaction().cache.clear()


def scan(gate, ticket=None, card=None, at=None, direction='in',
        decision='open', reason='ok', persons=1, medium=None, **values):
    "A scan as a box uploads it."
    at = at or dt.datetime.now(SHANGHAI)
    data = {
        'nonce': str(uuid.uuid4()), 'at': at.isoformat(), 'gate': gate,
        'lane': 1, 'medium': medium or ('rfid' if card else 'qr'),
        'ticket': ticket, 'card': card, 'decision': decision,
        'reason': reason, 'persons': persons, 'direction': direction,
        'offline': False, 'binding': None}
    data.update(values)
    return data
