"""What a booking needs to know of an area, read once and kept per process.

Ticket types, price rules, holidays and the area's maxima change a few times
a day while bookings read them hundreds of times a second, so the booking
path reads an immutable snapshot from a trytond Cache; every change to those
records clears it (in all processes, at their next transaction).
"""
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sql import NullsFirst

from trytond.cache import Cache
from trytond.pool import Pool

from . import pricing

_cache = Cache('scenic_ticket.catalogue', context=False)


def clear():
    "Forget the snapshots: call it when what they hold changes."
    _cache.clear()


def places_left(capacity, booked):
    "The places a slot has left to sell (never negative)."
    return max((capacity or 0) - (booked or 0), 0)


@dataclass(frozen=True)
class TypeInfo:
    id: int
    code: str
    name: str
    active: bool
    is_card: bool
    validity: str
    validity_days: int | None
    persons: int
    entries: int
    real_name: bool
    id_limit: int
    base_price: Decimal
    channels: frozenset
    zones: tuple  # ((zone id, daily maximum), ...)

    def sold_on(self, channel_id):
        return not self.channels or channel_id in self.channels

    def admits(self, zone_id):
        "Whether a slot of this zone (None: the whole area) suits the type."
        return (not self.zones or zone_id is None
            or zone_id in {z for z, _ in self.zones})


@dataclass(frozen=True)
class SlotInfo:
    id: int
    zone: int | None
    date: dt.date
    start_time: dt.time
    end_time: dt.time
    capacity: int
    booked: int
    timezone: ZoneInfo
    zone_code: str | None = None

    def aware(self, time):
        return dt.datetime.combine(self.date, time, tzinfo=self.timezone)

    @property
    def available(self):
        return places_left(self.capacity, self.booked)


@dataclass(frozen=True)
class Snapshot:
    company: int
    timezone: str
    daily_max: int | None
    currency: int
    currency_code: str
    digits: int
    types: tuple  # TypeInfo, ...
    rules: tuple  # pricing.Rule, ...
    holidays: frozenset


def _build(company_id):
    pool = Pool()
    Company = pool.get('company.company')
    TicketType = pool.get('scenic.ticket.type')
    PriceRule = pool.get('scenic.price.rule')
    CalendarDay = pool.get('scenic.calendar.day')
    company = Company(company_id)
    types = tuple(TypeInfo(
            id=t.id, code=t.code, name=t.name, active=bool(t.active),
            is_card=t.is_card, validity=t.validity,
            validity_days=t.validity_days, persons=t.persons,
            entries=t.entries, real_name=bool(t.real_name),
            id_limit=t.id_limit or 0, base_price=t.base_price,
            channels=frozenset(c.id for c in t.channels),
            zones=tuple((z.id, z.daily_max) for z in t.zones))
        for t in TicketType.search([
                ('company', '=', company_id),
                ('active', 'in', [True, False]),
                ]))
    holidays = frozenset(d.date for d in CalendarDay.search([
                ('company', '=', company_id), ('kind', '=', 'holiday')]))
    return Snapshot(
        company=company_id, timezone=company.timezone or 'Asia/Shanghai',
        daily_max=company.scenic_daily_max or None,
        currency=company.currency.id, currency_code=company.currency.code,
        digits=company.currency.digits, types=types,
        rules=tuple(PriceRule.rules_for(company_id)), holidays=holidays)


class Catalogue:
    "The snapshot of an area, with the reckoning bookings make from it."

    def __init__(self, company_id, snapshot=None):
        if snapshot is None:
            snapshot = _cache.get(company_id)
        if snapshot is None:
            snapshot = _build(company_id)
            _cache.set(company_id, snapshot)
        self.snapshot = snapshot
        self.timezone = ZoneInfo(snapshot.timezone)
        self.types = {t.code: t for t in snapshot.types}

    @property
    def currency_code(self):
        return self.snapshot.currency_code

    def is_holiday(self, date):
        return date in self.snapshot.holidays

    def quote(self, ttype, slot, channel_id):
        "Price a type for a slot; demand rules see how full the slot is."
        fill = (Decimal(slot.booked) / Decimal(slot.capacity)
            if slot.capacity else Decimal(1))
        ctx = pricing.SaleContext(
            ticket_type=ttype.id, day=slot.date,
            holiday=self.is_holiday(slot.date),
            slot_start=slot.start_time, channel=channel_id,
            fill_ratio=fill)
        return pricing.compute_price(
            ttype.base_price, self.snapshot.rules, ctx,
            digits=self.snapshot.digits)

    def validity(self, ttype, slot):
        "Valid from/until of a ticket of this type bought for this slot."
        if ttype.validity == 'time_slot':
            return slot.aware(slot.start_time), slot.aware(slot.end_time)
        start = dt.datetime.combine(slot.date, dt.time(), self.timezone)
        days = ttype.validity_days if (
            ttype.validity == 'days_from_first_use') else 1
        return start, start + dt.timedelta(days=days or 1)

    def load_scopes(self, ttype):
        "(scope, zone id, maximum) of every daily counter a type counts on."
        scopes = []
        if self.snapshot.daily_max:
            scopes.append(('area', None, self.snapshot.daily_max))
        for zone, maximum in ttype.zones:
            scopes.append((f'zone:{zone}', zone, maximum))
        return scopes

    def slot(self, slot_id):
        "The slot's row, read without the ORM; None if not of this area."
        from .dbtools import cursor as db_cursor
        from .dbtools import rendered
        from .dbtools import table as sql_table

        def build(slot_id, company):
            table = sql_table('scenic.time_slot')
            return table.select(
                table.id, table.zone, table.date, table.start_time,
                table.end_time, table.capacity, table.booked,
                where=(table.id == slot_id) & (table.company == company))
        cursor = db_cursor()
        # built once, then filled in (every booking reads its slot)
        cursor.execute(*rendered('catalogue_slot', build, slot_id=slot_id,
                company=self.snapshot.company))
        return self.slot_from_row(cursor.fetchone())

    def slot_from_row(self, row):
        """The slot of a row of `slot`'s read (None: no row), for a caller
        that read it with others in one round trip (the booking engine)."""
        return self._slot_info(*row) if row else None

    def day_slots(self, date):
        """The area's slots of a day with their zone's code, read without
        the ORM, in the time slots' order (start, area before zones, zone
        name: its stored, untranslated one)."""
        from .dbtools import cursor as db_cursor
        from .dbtools import table as sql_table
        slot = sql_table('scenic.time_slot')
        zone = sql_table('scenic.zone')
        cursor = db_cursor()
        cursor.execute(*slot.join(zone, 'LEFT',
                condition=zone.id == slot.zone).select(
                slot.id, slot.zone, slot.date, slot.start_time,
                slot.end_time, slot.capacity, slot.booked, zone.code,
                where=(slot.company == self.snapshot.company)
                & (slot.date == date),
                order_by=[slot.start_time.asc, NullsFirst(zone.name.asc),
                    slot.id.asc]))
        return [self._slot_info(*row) for row in cursor]

    def _slot_info(self, id_, zone, date, start, end, capacity, booked,
            zone_code=None):
        # SQLite hands dates and times back as text.
        if isinstance(date, str):
            date = dt.date.fromisoformat(date)
        if isinstance(start, str):
            start = dt.time.fromisoformat(start)
        if isinstance(end, str):
            end = dt.time.fromisoformat(end)
        return SlotInfo(id_, zone, date, start, end, capacity, booked or 0,
            self.timezone, zone_code)
