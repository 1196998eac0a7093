"""The scenic area (a Tryton company), its zones, channels and calendar."""
import hashlib
import secrets

from trytond.cache import Cache
from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, Index, ModelSQL, ModelView, Unique, fields, tree)
from trytond.pool import PoolMeta
from trytond.pyson import Eval, If
from trytond.transaction import Transaction
from trytond.wizard import Button, StateView, Wizard

from . import catalogue
from .exceptions import ChannelKeyError, ZoneValidationError
from .vault import pii_vault


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
    scenic_daily_max = fields.Integer(
        "Daily Maximum",
        help="The area's approved daily maximum load (LB/T 034-2014); "
        "empty for none.")
    scenic_instant_max = fields.Integer(
        "Instantaneous Maximum",
        help="The area's approved instantaneous maximum; empty for none.")

    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        catalogue.clear()


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


    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        catalogue.clear()


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
    hold_minutes = fields.Integer(
        "Hold Minutes", required=True,
        help="How long an unpaid booking keeps its places.")
    booking_page = fields.Boolean(
        "Web Booking Page",
        help="The public booking page sells through this channel.")
    api_key_hint = fields.Char(
        "API Key", readonly=True,
        help="The start of the channel's API key; the key itself is shown "
        "once, when it is made.")
    api_key_hash = fields.Char("API Key Hash", readonly=True)
    api_key_encrypted = fields.Char("Encrypted API Key", readonly=True)
    _key_cache = Cache('scenic.channel.api_key', context=False)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('code_unique', Unique(t, t.company, t.code),
                'scenic_ticket.msg_channel_code_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))
        cls._sql_indexes.add(Index(t, (t.api_key_hash, Index.Equality())))

    @staticmethod
    def default_hold_minutes():
        return 15

    @classmethod
    def validate_fields(cls, channels, field_names):
        super().validate_fields(channels, field_names)
        for channel in channels:
            if channel.hold_minutes is None or channel.hold_minutes < 1:
                raise ChannelKeyError(gettext(
                        'scenic_ticket.msg_channel_hold_minutes',
                        channel=channel.rec_name))

    @staticmethod
    def hash_key(key):
        return hashlib.sha256(key.encode()).hexdigest()

    def set_api_key(self, key=None):
        """Give the channel a new API key and return it.

        Keys are random unless given (the demo's is known). Only a hash
        is needed to authenticate; the encrypted copy lets the public
        booking page embed its channel's key.
        """
        key = key or secrets.token_urlsafe(32)
        self.__class__.write([self], {
                'api_key_hint': key[:6] + '…',
                'api_key_hash': self.hash_key(key),
                'api_key_encrypted': pii_vault().encrypt(key,
                    purpose='channel'),
                })
        return key

    @classmethod
    def from_api_key(cls, key):
        "The active channel a key belongs to, or None."
        if not key:
            return None
        digest = cls.hash_key(key)
        channel_id = cls._key_cache.get(digest, -1)
        if channel_id == -1:
            channels = cls.search([('api_key_hash', '=', digest)], limit=1)
            channel_id = channels[0].id if channels else None
            cls._key_cache.set(digest, channel_id)
        return cls(channel_id) if channel_id else None

    @classmethod
    def on_modification(cls, mode, channels, field_names=None):
        super().on_modification(mode, channels, field_names=field_names)
        cls._key_cache.clear()

    def get_api_key(self):
        if self.api_key_encrypted:
            return pii_vault().decrypt(self.api_key_encrypted,
                purpose='channel')


class NewAPIKeyShow(ModelView):
    "New API Key"
    __name__ = 'scenic.channel.new_key.show'
    channel = fields.Many2One('scenic.channel', "Channel", readonly=True)
    api_key = fields.Char(
        "API Key", readonly=True,
        help="Give this key to the channel now: it is not shown again.")


class NewAPIKey(Wizard):
    "New API Key"
    __name__ = 'scenic.channel.new_key'
    start_state = 'show'
    show = StateView('scenic.channel.new_key.show',
        'scenic_ticket.channel_new_key_show_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def default_show(self, fields):
        return {
            'channel': self.record.id,
            'api_key': self.record.set_api_key(),
            }


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

    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        catalogue.clear()
