"""The scenic area (a Tryton company), its zones, channels and calendar."""
from trytond.model import (
    DeactivableMixin, ModelSQL, ModelView, Unique, fields, tree)
from trytond.i18n import gettext
from trytond.pool import PoolMeta
from trytond.pyson import Eval, If
from trytond.transaction import Transaction

from .exceptions import ZoneValidationError


def default_company():
    return Transaction().context.get('company')


class CompanyMixin:
    "Records that belong to one scenic area."
    __slots__ = ()
    company = fields.Many2One(
        'company.company', "Scenic Area", required=True, ondelete='CASCADE',
        domain=[
            ('id', If(Eval('context', {}).contains('company'), '=', '!='),
                Eval('context', {}).get('company', -1)),
            ])

    @classmethod
    def default_company(cls):
        return default_company()


class Company(metaclass=PoolMeta):
    __name__ = 'company.company'
    scenic_zones = fields.One2Many(
        'scenic.zone', 'company', "Zones",
        help="The zones of the scenic area: park, cable car, museum…")


class Zone(CompanyMixin, DeactivableMixin, tree(), ModelSQL, ModelView):
    "A part of the scenic area with its own approved maximum load."
    __name__ = 'scenic.zone'
    name = fields.Char("Name", required=True, translate=True)
    code = fields.Char("Code", required=True,
        help="Short code printed on gates and reports, e.g. MAIN.")
    parent = fields.Many2One(
        'scenic.zone', "Parent", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))])
    children = fields.One2Many('scenic.zone', 'parent', "Children")
    daily_max = fields.Integer(
        "Daily Maximum", required=True,
        help="Approved daily maximum load (LB/T 034-2014): visitors per day.")
    instant_max = fields.Integer(
        "Instantaneous Maximum", required=True,
        help="Approved instantaneous maximum (LB/T 034-2014): "
        "visitors inside at the same time.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('code_unique', Unique(t, t.company, t.code),
                'scenic_ticket.msg_zone_code_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))

    @classmethod
    def validate_fields(cls, zones, field_names):
        super().validate_fields(zones, field_names)
        if field_names & {'daily_max', 'instant_max'}:
            for zone in zones:
                zone.check_maxima()

    def check_maxima(self):
        for name in ['daily_max', 'instant_max']:
            value = getattr(self, name)
            if value is None or value <= 0:
                raise ZoneValidationError(gettext(
                        'scenic_ticket.msg_zone_maximum_positive',
                        zone=self.rec_name,
                        field=self.__class__.fields_get([name])[name][
                            'string']))
        if self.instant_max > self.daily_max:
            raise ZoneValidationError(gettext(
                    'scenic_ticket.msg_zone_instant_above_daily',
                    zone=self.rec_name))


class Channel(CompanyMixin, DeactivableMixin, ModelSQL, ModelView):
    "A way tickets are sold: box office, kiosk, web, OTA, agency."
    __name__ = 'scenic.channel'
    name = fields.Char("Name", required=True, translate=True)
    code = fields.Char("Code", required=True)
    kind = fields.Selection([
            ('box_office', "Box Office"),
            ('kiosk', "Self-Service Kiosk"),
            ('online', "Online"),
            ('ota', "OTA"),
            ('agency', "Agency"),
            ], "Kind", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('code_unique', Unique(t, t.company, t.code),
                'scenic_ticket.msg_channel_code_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))


class CalendarDay(CompanyMixin, ModelSQL, ModelView):
    "A day that is not like the others: closed, or a public holiday."
    __name__ = 'scenic.calendar.day'
    date = fields.Date("Date", required=True)
    kind = fields.Selection([
            ('holiday', "Public Holiday"),
            ('closed', "Closed"),
            ], "Kind", required=True,
        help="Holidays can carry their own prices; "
        "no time slots are generated on closed days.")
    name = fields.Char("Name", translate=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('date_unique', Unique(t, t.company, t.date),
                'scenic_ticket.msg_calendar_day_unique'),
            ]
        cls._order.insert(0, ('date', 'ASC'))

    def get_rec_name(self, name):
        label = self.name or dict(
            self.fields_get(['kind'])['kind']['selection'])[self.kind]
        return f"{self.date} {label}"

    @classmethod
    def kinds_between(cls, company, start, end):
        "Map date → kind for the special days of an area in [start, end]."
        days = cls.search([
                ('company', '=', company),
                ('date', '>=', start),
                ('date', '<=', end),
                ])
        return {d.date: d.kind for d in days}
