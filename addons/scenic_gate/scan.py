"""What the gates saw: the scan log, the use of tickets and cards, and the
zones' headcount with the LB/T 068-2017 warning levels."""

from sql import Null

from scenic_common import protocol
from scenic_ticket.area import CompanyMixin
from scenic_ticket.slot import area_today

from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval, If
from trytond.transaction import Transaction

from .gate import DIRECTIONS


REASONS = [
    ('ok', "OK"),
    ('invalid_signature', "Invalid Signature"),
    ('malformed', "Unreadable Code"),
    ('unknown_key', "Unknown Key"),
    ('retired_key', "Retired Key"),
    ('unknown_ticket', "Unknown Ticket"),
    ('revoked', "Revoked"),
    ('not_yet_valid', "Not Yet Valid"),
    ('expired', "Expired"),
    ('wrong_area', "Wrong Scenic Area"),
    ('wrong_zone', "Wrong Zone"),
    ('wrong_gate', "Wrong Gate"),
    ('already_used', "Already Used"),
    ('reentry_not_allowed', "Re-entry Not Allowed"),
    ('binding_required', "Binding Required"),
    ('binding_mismatch', "Binding Mismatch"),
    ('passback', "Passback"),
    ('too_soon', "Too Soon"),
    ('capacity_full', "Capacity Full"),
    ('card_suspended', "Card Suspended"),
    ('card_lost', "Card Lost"),
    ('card_replaced', "Card Replaced"),
    ('card_exhausted', "Card Exhausted"),
    ('unknown_card', "Unknown Card"),
    ('no_ticket_today', "No Ticket Today"),
    # upload only: an offline box admitted it, the refund came before the
    # scan reached the ERP (issue 15): review the refund
    ('refunded_after_entry', "Refunded After Entry"),
    ]
MEDIUM_LABELS = {'qr': "QR Code", 'id_card': "ID Card", 'rfid': "RFID Card"}
# The protocol's media (scenic_common.protocol), labelled.
MEDIA = [(m, MEDIUM_LABELS[m]) for m in protocol.MEDIA]
SCAN_DIRECTIONS = [d for d in DIRECTIONS if d[0] != 'both']

# LB/T 068-2017: warning levels by share of the instantaneous maximum.
WARNING_LEVELS = [
    ('none', "None"),
    ('yellow', "Yellow (80 %)"),
    ('orange', "Orange (90 %)"),
    ('red', "Red (95 %)"),
    ]
THRESHOLDS = [(95, 'red'), (90, 'orange'), (80, 'yellow')]


def warning_level(inside, instant_max):
    "The LB/T 068-2017 level of a zone with `inside` people."
    if not instant_max:
        return 'none'
    load = inside * 100 / instant_max
    for threshold, level in THRESHOLDS:
        if load >= threshold:
            return level
    return 'none'


def load_percent(inside, instant_max):
    if not instant_max:
        return None
    return round(inside * 100 / instant_max, 1)

# Rows of lists in the colour of their LB/T 068-2017 warning level.
WARNING_VISUAL = If(Eval('warning_level') == 'red', 'danger',
    If(Eval('warning_level').in_(['orange', 'yellow']), 'warning', ''))


class Scan(CompanyMixin, ModelSQL, ModelView):
    "A scan at a gate, admitted or refused, as its box uploaded it."
    __name__ = 'scenic.gate.scan'
    time = fields.Timestamp(
        "Time", required=True, readonly=True,
        help="When the box decided, to the microsecond: scans of one "
        "ticket are applied in this order.")
    gate = fields.Many2One(
        'scenic.gate', "Gate", required=True, readonly=True,
        ondelete='RESTRICT')
    lane = fields.Integer("Lane", readonly=True)
    medium = fields.Selection(MEDIA, "Medium", required=True, readonly=True)
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", readonly=True, ondelete='RESTRICT')
    card = fields.Many2One(
        'scenic.card', "Card", readonly=True, ondelete='RESTRICT')
    decision = fields.Selection([
            ('open', "Admitted"),
            ('deny', "Refused"),
            ], "Decision", required=True, readonly=True)
    reason = fields.Selection(REASONS, "Reason", readonly=True)
    persons = fields.Integer("Persons", required=True, readonly=True)
    direction = fields.Selection(
        SCAN_DIRECTIONS, "Direction", required=True, readonly=True)
    offline = fields.Boolean(
        "Offline", readonly=True,
        help="The box decided while cut off from the ERP.")
    box = fields.Many2One(
        'scenic.gate.box', "Box", required=True, readonly=True,
        ondelete='RESTRICT')
    nonce = fields.Char("Nonce", required=True, readonly=True)
    binding_method = fields.Char("Binding", readonly=True)
    binding_ref = fields.Char("Binding Reference", readonly=True)
    binding_score = fields.Float("Binding Score", readonly=True)
    conflict = fields.Boolean(
        "Conflict", readonly=True,
        help="The ERP would have refused this admission: boxes that were "
        "cut off admitted what the others had used.")
    conflict_reason = fields.Selection(
        REASONS, "Conflict Reason", readonly=True)
    conflict_note = fields.Text("Conflict Note", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('nonce_unique', Unique(t, t.nonce),
                'scenic_gate.msg_scan_nonce_unique'),
            ]
        cls._sql_indexes.update({
                Index(t, (t.gate, Index.Equality()),
                    (t.time, Index.Range())),
                Index(t, (t.ticket, Index.Equality()),
                    where=t.ticket != Null),
                Index(t, (t.card, Index.Equality()),
                    where=t.card != Null),
                Index(t, (t.conflict, Index.Equality()),
                    where=t.conflict == True),  # noqa: E712
                })
        cls._order = [('time', 'DESC'), ('id', 'DESC')]

    def get_rec_name(self, name):
        return f"{self.gate.code} {self.time}"


    @classmethod
    def view_attributes(cls):
        return super().view_attributes() + [
            ('/tree', 'visual', If(Eval('conflict', False), 'danger',
                    If(Eval('decision') == 'deny', 'muted', ''))),
            ]

class Usage(CompanyMixin, ModelSQL, ModelView):
    "How a ticket or a card has been used at the gates."
    __name__ = 'scenic.ticket.usage'
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", readonly=True, ondelete='CASCADE')
    card = fields.Many2One(
        'scenic.card', "Card", readonly=True, ondelete='CASCADE')
    entries = fields.Integer("Entries", required=True, readonly=True)
    exits = fields.Integer("Exits", required=True, readonly=True)
    last_entry = fields.Timestamp("Last Entry", readonly=True)
    last_exit = fields.Timestamp("Last Exit", readonly=True)
    inside = fields.Boolean("Inside", readonly=True)
    binding_method = fields.Char("Binding", readonly=True)
    binding_ref = fields.Char(
        "Binding Reference", readonly=True,
        help="The holder's binding captured at first entry.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('ticket_unique', Unique(t, t.ticket),
                'scenic_gate.msg_usage_unique'),
            ('card_unique', Unique(t, t.card),
                'scenic_gate.msg_usage_unique'),
            ]
        cls._sql_indexes.add(
            Index(t, (t.company, Index.Equality()),
                (t.write_date, Index.Range())))
        cls._order = [('last_entry', 'DESC NULLS LAST'), ('id', 'DESC')]

    @staticmethod
    def default_entries():
        return 0

    @staticmethod
    def default_exits():
        return 0

    def get_rec_name(self, name):
        return (self.ticket or self.card).rec_name

    @classmethod
    def copy_card_usage(cls, old, new):
        "A replacement card carries on its predecessor's use."
        usages = cls.search([('card', '=', old.id)])
        if usages:
            cls.copy(usages, default={'card': new.id})


class Headcount(CompanyMixin, ModelSQL, ModelView):
    "People who went into and out of a zone on a day, from admitted scans."
    __name__ = 'scenic.zone.headcount'
    zone = fields.Many2One(
        'scenic.zone', "Zone", required=True, readonly=True,
        ondelete='CASCADE')
    date = fields.Date("Date", required=True, readonly=True)
    entries = fields.Integer("Entries", required=True, readonly=True)
    exits = fields.Integer("Exits", required=True, readonly=True)
    inside = fields.Function(fields.Integer("Inside"), 'get_load')
    instant_max = fields.Function(
        fields.Integer("Instantaneous Maximum"), 'get_load')
    load = fields.Function(
        fields.Float("Load (%)", digits=(3, 1)), 'get_load')
    warning_level = fields.Function(
        fields.Selection(WARNING_LEVELS, "Warning Level"), 'get_load')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('zone_date_unique', Unique(t, t.zone, t.date),
                'scenic_gate.msg_headcount_unique'),
            ]
        cls._order = [('date', 'DESC'), ('zone', 'ASC'), ('id', 'ASC')]

    @classmethod
    def view_attributes(cls):
        return super().view_attributes() + [
            ('/tree', 'visual', WARNING_VISUAL),
            ]

    @classmethod
    def get_load(cls, headcounts, names):
        result = {n: {} for n in names}
        for h in headcounts:
            inside = max(h.entries - h.exits, 0)
            maximum = h.zone.instant_max
            values = {
                'inside': inside,
                'instant_max': maximum,
                'load': load_percent(inside, maximum),
                'warning_level': warning_level(inside, maximum),
                }
            for name in names:
                result[name][h.id] = values[name]
        return result

    @classmethod
    def inside_today(cls, company):
        "{zone id: people inside now} for the zones of an area."
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.select(
                table.zone, table.entries - table.exits,
                where=(table.company == company.id)
                & (table.date == area_today(company))))
        return {zone: max(inside, 0) for zone, inside in cursor}


class Zone(metaclass=PoolMeta):
    __name__ = 'scenic.zone'
    inside = fields.Function(
        fields.Integer(
            "Inside",
            help="People inside now: today's admitted entries minus the "
            "counted exits."),
        'get_load')
    load = fields.Function(
        fields.Float(
            "Load (%)", digits=(3, 1),
            help="People inside as a share of the instantaneous maximum."),
        'get_load')
    warning_level = fields.Function(
        fields.Selection(
            WARNING_LEVELS, "Warning Level",
            help="LB/T 068-2017: yellow from 80 %, orange from 90 %, "
            "red from 95 % of the instantaneous maximum."),
        'get_load')
    full = fields.Function(
        fields.Boolean(
            "Full", help="The gates refuse entries: the zone is at its "
            "instantaneous maximum."),
        'get_load')

    @classmethod
    def view_attributes(cls):
        # Only the load list: the zones' other lists have no level.
        return super().view_attributes() + [
            ("/tree[field[@name='warning_level']]", 'visual',
                WARNING_VISUAL),
            ]

    @classmethod
    def get_load(cls, zones, names):
        Headcount = Pool().get('scenic.zone.headcount')
        result = {n: {} for n in names}
        insides = {}
        for company in {z.company for z in zones}:
            insides.update(Headcount.inside_today(company))
        for zone in zones:
            inside = insides.get(zone.id, 0)
            maximum = zone.instant_max
            values = {
                'inside': inside,
                'load': load_percent(inside, maximum),
                'warning_level': warning_level(inside, maximum),
                'full': bool(maximum) and inside >= maximum,
                }
            for name in names:
                result[name][zone.id] = values[name]
        return result

