"""Time slots: the timed-entry windows visitors book, and their generator."""
import datetime as dt
from zoneinfo import ZoneInfo

from sql import Literal
from sql.conditionals import Coalesce

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval, PYSONEncoder
from trytond.transaction import Transaction
from trytond.wizard import Button, StateAction, StateView, Wizard

from .area import CompanyMixin, default_company
from .catalogue import places_left
from .dbtools import naive
from .exceptions import SlotGenerationError, SlotValidationError

WEEKDAYS = [
    ('0', "Monday"),
    ('1', "Tuesday"),
    ('2', "Wednesday"),
    ('3', "Thursday"),
    ('4', "Friday"),
    ('5', "Saturday"),
    ('6', "Sunday"),
    ]
MAX_GENERATION_DAYS = 366


def area_timezone(company):
    return ZoneInfo(company.timezone or 'Asia/Shanghai')


def area_today(company):
    """Today where the area is: its date changes at its own midnight, not
    the server's (a UTC server is still on yesterday until 08:00 in China)."""
    return Pool().get('ir.date').today(area_timezone(company))


class TimeSlot(CompanyMixin, ModelSQL, ModelView):
    "A window of a day with a capacity, booked by timed reservations."
    __name__ = 'scenic.time_slot'
    zone = fields.Many2One(
        'scenic.zone', "Zone", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        help="Leave empty for a slot of the whole area.")
    date = fields.Date("Date", required=True)
    start_time = fields.Time("Start", required=True, format='%H:%M')
    end_time = fields.Time("End", required=True, format='%H:%M')
    capacity = fields.Integer(
        "Capacity", required=True, help="Persons this slot can admit.")
    booked = fields.Integer(
        "Booked", required=True, readonly=True,
        help="Persons holding or having bought this slot.")
    available = fields.Function(
        fields.Integer("Available"), 'get_available')
    start = fields.Function(
        fields.DateTime("Start At"), 'get_datetime')
    end = fields.Function(
        fields.DateTime("End At"), 'get_datetime')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [
            ('date', 'ASC'), ('start_time', 'ASC'), ('zone', 'ASC NULLS FIRST'),
            ('id', 'ASC')]
        t = cls.__table__()
        # availability queries read one area's day
        cls._sql_indexes.add(Index(
                t, (t.company, Index.Range()), (t.date, Index.Range())))

    @staticmethod
    def default_booked():
        return 0

    def get_available(self, name):
        return places_left(self.capacity, self.booked)

    def get_rec_name(self, name):
        label = (f"{self.date} {self.start_time:%H:%M}–"
            f"{self.end_time:%H:%M}")
        if self.zone:
            label += f" ({self.zone.rec_name})"
        return label

    def aware(self, time):
        "The slot's local time on its date, timezone-aware."
        return dt.datetime.combine(
            self.date, time, tzinfo=area_timezone(self.company))

    @classmethod
    def get_datetime(cls, slots, names):
        # Tryton DateTime fields hold naive UTC; the client shows them
        # in the user's timezone.
        result = {n: {} for n in names}
        for slot in slots:
            for name in names:
                result[name][slot.id] = naive(
                    slot.aware(getattr(slot, f'{name}_time')))
        return result

    @classmethod
    def validate_fields(cls, slots, field_names):
        super().validate_fields(slots, field_names)
        for slot in slots:
            slot.check_times_capacity()
        if field_names & {'date', 'start_time', 'end_time', 'zone',
                'company'}:
            cls.check_overlap(slots)

    def _label(self, field):
        return self.__class__.fields_get([field])[field]['string']

    def check_times_capacity(self):
        if self.capacity is None or self.capacity < 0:
            raise SlotValidationError(gettext(
                    'scenic_ticket.msg_slot_capacity_negative',
                    slot=self.rec_name, field=self._label('capacity')))
        if self.capacity < (self.booked or 0):
            raise SlotValidationError(gettext(
                    'scenic_ticket.msg_slot_capacity_below_booked',
                    slot=self.rec_name, booked=self.booked,
                    field=self._label('capacity')))
        if self.end_time <= self.start_time:
            raise SlotValidationError(gettext(
                    'scenic_ticket.msg_slot_end_before_start',
                    slot=self.rec_name, field=self._label('end_time')))

    @classmethod
    def check_overlap(cls, slots):
        "Slots of one zone (or of the whole area) must not overlap."
        transaction = Transaction()
        cursor = transaction.connection.cursor()
        table = cls.__table__()
        for slot in slots:
            zone = slot.zone.id if slot.zone else -1
            cursor.execute(*table.select(table.id,
                    where=(table.company == slot.company.id)
                    & (Coalesce(table.zone, Literal(-1)) == zone)
                    & (table.date == slot.date)
                    & (table.start_time < slot.end_time)
                    & (table.end_time > slot.start_time)
                    & (table.id != slot.id),
                    limit=1))
            row = cursor.fetchone()
            if row:
                other = cls(row[0])
                raise SlotValidationError(gettext(
                        'scenic_ticket.msg_slot_overlap',
                        slot=slot.rec_name, other=other.rec_name,
                        field=slot._label('start_time')))

    @classmethod
    def slots_of_day(cls, company, date, zone=None):
        return cls.search([
                ('company', '=', company),
                ('date', '=', date),
                ('zone', '=', zone),
                ])


class GenerateSlotsStart(ModelView):
    "Generate Time Slots"
    __name__ = 'scenic.time_slot.generate.start'
    company = fields.Many2One(
        'company.company', "Scenic Area", required=True, readonly=True)
    zone = fields.Many2One(
        'scenic.zone', "Zone",
        domain=[('company', '=', Eval('company', -1))],
        help="Leave empty for slots of the whole area.")
    start_date = fields.Date("From Date", required=True)
    end_date = fields.Date("To Date", required=True)
    first_start = fields.Time(
        "First Slot Starts", required=True, format='%H:%M')
    last_end = fields.Time("Last Slot Ends", required=True, format='%H:%M')
    interval = fields.Integer(
        "Slot Length (minutes)", required=True,
        help="A new slot starts every this many minutes.")
    capacity = fields.Integer("Capacity per Slot", required=True)
    closed_weekdays = fields.MultiSelection(
        WEEKDAYS, "Closed Weekdays",
        help="No slots on these weekdays, e.g. museums closed on Monday.")

    @staticmethod
    def default_company():
        return default_company()

    @staticmethod
    def default_start_date():
        return Pool().get('ir.date').today()

    @staticmethod
    def default_first_start():
        return dt.time(8, 0)

    @staticmethod
    def default_last_end():
        return dt.time(17, 0)

    @staticmethod
    def default_interval():
        return 30

    @staticmethod
    def default_closed_weekdays():
        return []

    def _label(self, field):
        return self.__class__.fields_get([field])[field]['string']

    def check(self):
        if self.end_date < self.start_date:
            raise SlotGenerationError(gettext(
                    'scenic_ticket.msg_generate_dates_inverted',
                    field=self._label('end_date')))
        if (self.end_date - self.start_date).days >= MAX_GENERATION_DAYS:
            raise SlotGenerationError(gettext(
                    'scenic_ticket.msg_generate_too_many_days',
                    field=self._label('end_date'),
                    days=MAX_GENERATION_DAYS))
        if self.interval is None or self.interval <= 0:
            raise SlotGenerationError(gettext(
                    'scenic_ticket.msg_generate_interval',
                    field=self._label('interval')))
        if self.last_end <= self.first_start:
            raise SlotGenerationError(gettext(
                    'scenic_ticket.msg_generate_times_inverted',
                    field=self._label('last_end')))
        if self.capacity is None or self.capacity < 0:
            raise SlotGenerationError(gettext(
                    'scenic_ticket.msg_slot_capacity_negative',
                    slot='', field=self._label('capacity')))

    def times(self):
        "(start, end) pairs of one day; the last slot ends at last_end."
        day = dt.date(2000, 1, 1)
        start = dt.datetime.combine(day, self.first_start)
        last = dt.datetime.combine(day, self.last_end)
        step = dt.timedelta(minutes=self.interval)
        while start + step <= last:
            yield start.time(), (start + step).time()
            start += step

    def slot_values(self):
        "Values of the slots to create; existing identical slots are kept."
        pool = Pool()
        CalendarDay = pool.get('scenic.calendar.day')
        TimeSlot = pool.get('scenic.time_slot')
        self.check()
        special = CalendarDay.kinds_between(
            self.company.id, self.start_date, self.end_date)
        closed_weekdays = {int(d) for d in self.closed_weekdays or []}
        existing = {
            (s.date, s.start_time, s.end_time) for s in TimeSlot.search([
                    ('company', '=', self.company.id),
                    ('zone', '=', self.zone.id if self.zone else None),
                    ('date', '>=', self.start_date),
                    ('date', '<=', self.end_date),
                    ])}
        values = []
        day = self.start_date
        while day <= self.end_date:
            if (day.weekday() not in closed_weekdays
                    and special.get(day) != 'closed'):
                for start, end in self.times():
                    if (day, start, end) in existing:
                        continue
                    values.append({
                            'company': self.company.id,
                            'zone': self.zone.id if self.zone else None,
                            'date': day,
                            'start_time': start,
                            'end_time': end,
                            'capacity': self.capacity,
                            })
            day += dt.timedelta(days=1)
        return values


class GenerateSlots(Wizard):
    "Generate Time Slots"
    __name__ = 'scenic.time_slot.generate'
    start = StateView('scenic.time_slot.generate.start',
        'scenic_ticket.time_slot_generate_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Generate", 'generate', 'tryton-ok', default=True),
            ])
    generate = StateAction('scenic_ticket.act_time_slot')

    def do_generate(self, action):
        TimeSlot = Pool().get('scenic.time_slot')
        slots = TimeSlot.create(self.start.slot_values())
        action['pyson_domain'] = PYSONEncoder().encode(
            [('id', 'in', [s.id for s in slots])])
        action['name'] += f" ({len(slots)})"
        return action, {}
