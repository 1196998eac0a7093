"""Gates, their access rules and the IoT boxes that run them."""
import datetime as dt
import hashlib
import hmac
import secrets

from sql import Literal
from sql.operators import Equal

from scenic_common import protocol
from scenic_ticket.area import CompanyMixin
from scenic_ticket.dbtools import utcnow
from scenic_ticket.workflow import StateMachine, sql_transition, transition

from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, Exclude, Index, ModelSQL, ModelView, Unique, fields)
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Bool, Eval, If
from trytond.transaction import Transaction
from trytond.wizard import Button, StateView, Wizard

from .exceptions import (
    BoxStateError, DeletionError, GateValidationError, RuleValidationError)


DIRECTIONS = [
    ('in', "Entry"),
    ('out', "Exit"),
    ('both', "Entry and Exit"),
    ]
DEVICE_KIND_LABELS = {
    'turnstile': "Turnstile",
    'qr_reader': "QR Reader",
    'id_reader': "ID Card Reader",
    'rfid_reader': "RFID Reader",
    'camera': "Camera",
    'kiosk': "Kiosk",
    'printer': "Ticket Printer",
    }
# The protocol's kinds (scenic_common.protocol), labelled.
DEVICE_KINDS = [(k, DEVICE_KIND_LABELS[k]) for k in protocol.DEVICE_KINDS]
TOKEN_VALIDITY = dt.timedelta(hours=24)
HEARTBEAT_SECONDS = 60
MISSED_HEARTBEATS = 3
BACKLOG_SCANS = 500
BACKLOG_LAG_SECONDS = 600


def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def enrolled_boxes_exist(company_id):
    Box = Pool().get('scenic.gate.box')
    return bool(Box.search([
                ('company', '=', company_id),
                ('state', '=', 'enrolled'),
                ], limit=1))


class Rule(CompanyMixin, ModelSQL, ModelView):
    "How tickets are let through the gates: tolerances and re-entry."
    __name__ = 'scenic.gate.rule'
    name = fields.Char("Name", required=True, translate=True)
    early_minutes = fields.Integer(
        "Early Minutes", required=True,
        help="How long before the ticket's start visitors may enter.")
    late_minutes = fields.Integer(
        "Late Minutes", required=True,
        help="How long after the ticket's end visitors may still enter.")
    min_interval_minutes = fields.Integer(
        "Minimum Interval", required=True,
        help="Minutes between two entries of one ticket or card "
        "(0 for none).")
    anti_passback = fields.Boolean(
        "Anti-Passback",
        help="Refuse a second entry before an exit, and an exit before "
        "an entry.")
    exit_counts = fields.Boolean(
        "Exits Counted",
        help="Exit scans take the persons off the zone's headcount.")
    default = fields.Boolean(
        "Default",
        help="The rule of the ticket types and gates that have none.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('default_unique',
                Exclude(t, (t.company, Equal),
                    where=t.default == Literal(True)),
                'scenic_gate.msg_rule_default_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))

    @staticmethod
    def default_early_minutes():
        return 30

    @staticmethod
    def default_late_minutes():
        return 0

    @staticmethod
    def default_min_interval_minutes():
        return 0

    @staticmethod
    def default_anti_passback():
        return False

    @staticmethod
    def default_exit_counts():
        return True

    @staticmethod
    def default_default():
        return False

    @classmethod
    def validate_fields(cls, rules, field_names):
        super().validate_fields(rules, field_names)
        names = ['early_minutes', 'late_minutes', 'min_interval_minutes']
        if field_names & set(names):
            for rule in rules:
                for name in names:
                    value = getattr(rule, name)
                    if value is None or value < 0:
                        raise RuleValidationError(gettext(
                                'scenic_gate.msg_rule_minutes_negative',
                                rule=rule.rec_name,
                                field=cls.fields_get([name])[name]['string']))

    @classmethod
    def area_default(cls, company_id):
        rules = cls.search([
                ('company', '=', company_id),
                ('default', '=', True),
                ], limit=1)
        return rules[0] if rules else None

    @classmethod
    def ensure_default(cls, company_ids):
        "Give the areas without a default rule a standard one."
        for company_id in set(company_ids):
            if not cls.area_default(company_id):
                cls.create([{
                            'company': company_id,
                            'name': "Standard",
                            'default': True,
                            }])


class TicketType(metaclass=PoolMeta):
    __name__ = 'scenic.ticket.type'
    gate_rule = fields.Many2One(
        'scenic.gate.rule', "Access Rule", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        help="How the gates let this type in; empty for the area's default "
        "rule.")


class Gate(CompanyMixin, DeactivableMixin, ModelSQL, ModelView):
    "A gate: one or more lanes of turnstiles run by one IoT box."
    __name__ = 'scenic.gate'
    code = fields.Char(
        "Code", required=True,
        help="Short code shown on the box, e.g. MAIN-IN.")
    name = fields.Char("Name", required=True, translate=True)
    zone = fields.Many2One(
        'scenic.zone', "Zone", required=True, ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        help="The zone this gate lets visitors into or out of.")
    direction = fields.Selection(DIRECTIONS, "Direction", required=True)
    lanes = fields.Integer("Lanes", required=True)
    ticket_types = fields.Many2Many(
        'scenic.gate-scenic.ticket.type', 'gate', 'ticket_type',
        "Ticket Types Admitted",
        domain=[('company', '=', Eval('company', -1))],
        help="Leave empty to admit every ticket type.")
    rule = fields.Many2One(
        'scenic.gate.rule', "Access Rule", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        help="Overrides the ticket types' rules at this gate; "
        "empty to use them.")
    box = fields.Many2One(
        'scenic.gate.box', "Box", ondelete='SET NULL',
        domain=[('company', '=', Eval('company', -1))])

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('code_unique', Unique(t, t.company, t.code),
                'scenic_gate.msg_gate_code_unique'),
            ]
        cls._order.insert(0, ('code', 'ASC'))

    @staticmethod
    def default_direction():
        return 'in'

    @staticmethod
    def default_lanes():
        return 1

    def get_rec_name(self, name):
        return f"{self.code} {self.name}"

    @classmethod
    def search_rec_name(cls, name, clause):
        _, operator, value = clause[:3]
        return ['OR', ('code', operator, value), ('name', operator, value)]

    @classmethod
    def validate_fields(cls, gates, field_names):
        super().validate_fields(gates, field_names)
        if 'lanes' in field_names:
            for gate in gates:
                if gate.lanes is None or gate.lanes < 1:
                    raise GateValidationError(gettext(
                            'scenic_gate.msg_gate_lanes_positive',
                            gate=gate.rec_name,
                            field=cls.fields_get(['lanes'])['lanes'][
                                'string']))

    @classmethod
    def create(cls, vlist):
        gates = super().create(vlist)
        Pool().get('scenic.gate.rule').ensure_default(
            g.company.id for g in gates)
        return gates

    @classmethod
    def check_modification(cls, mode, gates, values=None, external=False):
        super().check_modification(
            mode, gates, values=values, external=external)
        if mode == 'delete':
            Scan = Pool().get('scenic.gate.scan')
            for gate in gates:
                if (enrolled_boxes_exist(gate.company.id)
                        or Scan.search([('gate', '=', gate.id)], limit=1)):
                    raise DeletionError(gettext(
                            'scenic_gate.msg_gate_delete',
                            gate=gate.rec_name))


class GateTicketType(ModelSQL):
    __name__ = 'scenic.gate-scenic.ticket.type'
    gate = fields.Many2One(
        'scenic.gate', "Gate", required=True, ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='CASCADE')


BOX_TRANSITIONS = {
    ('draft', 'enrolled'),  # its enrolment token was spent
    ('enrolled', 'enrolled'),  # re-enrolled with a new token (new disk…)
    ('draft', 'revoked'),
    ('enrolled', 'revoked'),
    }


class Box(CompanyMixin, StateMachine, ModelSQL, ModelView):
    "An IoT box: decides offline at its gates and syncs with the ERP."
    __name__ = 'scenic.gate.box'
    name = fields.Char("Name", required=True)
    state = fields.Selection([
            ('draft', "Draft"),
            ('enrolled', "Enrolled"),
            ('revoked', "Revoked"),
            ], "State", required=True, readonly=True, sort=False)
    gates = fields.One2Many('scenic.gate', 'box', "Gates", readonly=True)
    hostname = fields.Char("Hostname", readonly=True)
    token_hash = fields.Char("Enrolment Token Hash", readonly=True)
    token_expires = fields.DateTime(
        "Enrolment Token Valid Until", readonly=True)
    secret_hash = fields.Char("Secret Hash", readonly=True)
    enrolled_at = fields.DateTime("Enrolled At", readonly=True)
    revoked_at = fields.DateTime("Revoked At", readonly=True)
    last_heartbeat = fields.DateTime("Last Seen", readonly=True)
    version = fields.Char("Version", readonly=True)
    outbox = fields.Integer(
        "Outbox", readonly=True,
        help="Scans the box still has to upload, at its last heartbeat.")
    sync_lag = fields.Integer(
        "Sync Lag", readonly=True,
        help="Seconds since the box's last successful sync, at its last "
        "heartbeat.")
    errors = fields.Integer(
        "Errors", readonly=True,
        help="Errors its devices reported at the last heartbeat.")
    heartbeats = fields.Integer("Heartbeats", readonly=True)
    devices = fields.One2Many(
        'scenic.gate.device', 'box', "Devices", readonly=True)
    online = fields.Function(
        fields.Boolean(
            "Online",
            help="A heartbeat came in the last "
            f"{MISSED_HEARTBEATS * HEARTBEAT_SECONDS} seconds."),
        'get_online', searcher='search_online')
    alarm = fields.Function(fields.Selection([
                (None, ""),
                ('offline', "Offline"),
                ('device', "Device Fault"),
                ('backlog', "Upload Backlog"),
                ], "Alarm"), 'get_alarm')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.token_hash, Index.Equality())))
        cls._order.insert(0, ('name', 'ASC'))
        cls._transitions |= BOX_TRANSITIONS
        cls._buttons.update({
                'enrolment_token': {
                    'invisible': ~Eval('state').in_(cls.sources('enrolled')),
                    'depends': ['state'],
                    },
                'revoke': {
                    'invisible': ~Eval('state').in_(cls.sources('revoked')),
                    'depends': ['state'],
                    },
                })

    @staticmethod
    def default_state():
        return 'draft'

    @classmethod
    def view_attributes(cls):
        return super().view_attributes() + [
            ('/tree', 'visual', If(Bool(Eval('alarm')), 'danger', '')),
            ]

    @staticmethod
    def default_heartbeats():
        return 0

    @classmethod
    def offline_before(cls, now=None):
        return (now or utcnow()) - dt.timedelta(
            seconds=MISSED_HEARTBEATS * HEARTBEAT_SECONDS)

    def get_online(self, name):
        return bool(self.state == 'enrolled' and self.last_heartbeat
            and self.last_heartbeat > self.offline_before())

    @classmethod
    def search_online(cls, name, clause):
        _, operator, value = clause[:3]
        online = [
            ('state', '=', 'enrolled'),
            ('last_heartbeat', '>', cls.offline_before()),
            ]
        positive = (operator == '=') == bool(value)
        if positive:
            return online
        return ['OR',
            ('state', '!=', 'enrolled'),
            ('last_heartbeat', '=', None),
            ('last_heartbeat', '<=', cls.offline_before()),
            ]

    def get_alarm(self, name):
        if self.state != 'enrolled':
            return None
        if not self.online:
            return 'offline'
        if any(not d.ok for d in self.devices):
            return 'device'
        if ((self.outbox or 0) > BACKLOG_SCANS
                or (self.sync_lag or 0) > BACKLOG_LAG_SECONDS):
            return 'backlog'
        return None

    @classmethod
    def copy(cls, boxes, default=None):
        default = default.copy() if default else {}
        for name in ['state', 'hostname', 'token_hash', 'token_expires',
                'secret_hash', 'enrolled_at', 'revoked_at',
                'last_heartbeat', 'version', 'outbox', 'sync_lag',
                'errors', 'heartbeats', 'devices', 'gates']:
            default.setdefault(name, None)
        return super().copy(boxes, default=default)

    @classmethod
    def check_modification(cls, mode, boxes, values=None, external=False):
        super().check_modification(
            mode, boxes, values=values, external=external)
        if mode == 'delete':
            for box in boxes:
                if box.state == 'enrolled':
                    raise DeletionError(gettext(
                            'scenic_gate.msg_box_delete_enrolled',
                            box=box.rec_name))

    @classmethod
    @ModelView.button_action('scenic_gate.wizard_box_enrolment_token')
    def enrolment_token(cls, boxes):
        pass

    @classmethod
    @ModelView.button
    @transition('revoked')
    def revoke(cls, boxes):
        # The token hash stays: enrolling with it answers `revoked`.
        cls.write(boxes, {'revoked_at': utcnow()})

    def new_enrolment_token(self, now=None):
        "Make the box's one-time enrolment token and return it."
        if not self.may_enter(self.state, 'enrolled'):
            raise BoxStateError(gettext(
                    'scenic_gate.msg_box_revoked_token', box=self.rec_name))
        token = secrets.token_urlsafe(24)
        expires = (now or utcnow()) + TOKEN_VALIDITY
        self.__class__.write([self], {
                'token_hash': digest(token),
                'token_expires': expires,
                })
        return token, expires

    @classmethod
    def enrol(cls, token, hostname=None, now=None):
        """Spend an enrolment token: (box, secret), or (box, None) when the
        box is revoked, or (None, None) when the token is not valid."""
        now = now or utcnow()
        if not token:
            return None, None
        token_hash = digest(token)
        boxes = cls.search([('token_hash', '=', token_hash)], limit=1)
        if not boxes:
            return None, None
        box, = boxes
        if box.state == 'revoked':
            return box, None
        if not box.token_expires or box.token_expires <= now:
            return None, None
        secret = secrets.token_urlsafe(32)
        table = cls.__table__()
        # Spent by whoever clears it first: the token works once.
        if not sql_transition(cls, table, 'enrolled',
                (table.id == box.id) & (table.token_hash == token_hash),
                [table.token_hash, table.token_expires, table.secret_hash,
                    table.enrolled_at, table.hostname],
                [None, None, digest(secret), now,
                    (hostname or '')[:255] or None]):
            return None, None
        # Codes sold after the box's last sync must verify offline: the
        # area's key exists before the first sale, not made by it.
        Pool().get('scenic.signing_key').active_signer(box.company)
        return cls(box.id), secret

    @classmethod
    def authenticate(cls, box_id, secret):
        """The box whose credentials these are, or None.

        A revoked box authenticates: the caller answers it `revoked`.
        """
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.select(
                table.id, table.secret_hash, table.state, table.company,
                where=table.id == box_id))
        row = cursor.fetchone()
        if not row or not row[1] or not secret:
            return None
        if not hmac.compare_digest(row[1], digest(secret)):
            return None
        return row

    @classmethod
    def heartbeat(cls, box_id, data, now=None):
        "Record a heartbeat: versions, backlog and the devices' health."
        pool = Pool()
        Device = pool.get('scenic.gate.device')
        now = now or utcnow()
        box = cls(box_id)
        devices = data.get('devices') or []
        values = {
            'last_heartbeat': now,
            'errors': sum(d.get('errors') or 0 for d in devices),
            'heartbeats': (box.heartbeats or 0) + 1,
            }
        for name, key in [('version', 'version'), ('outbox', 'outbox'),
                ('sync_lag', 'sync_lag_s')]:
            if data.get(key) is not None:
                values[name] = data[key]
        cls.write([box], values)
        known = {(d.kind, d.name): d for d in box.devices}
        to_create = []
        for device in devices:
            values = {
                'ok': bool(device.get('ok')),
                'errors': device.get('errors') or 0,
                'last_report': now,
                'paper': device.get('paper'),
                }
            if device.get('last_error'):
                # Kept until another error replaces it.
                values['last_error'] = device['last_error']
            record = known.get((device['kind'], device['name']))
            if record:
                Device.write([record], values)
            else:
                to_create.append(dict(values, box=box.id,
                        kind=device['kind'], name=device['name']))
        if to_create:
            Device.create(to_create)


class Device(ModelSQL, ModelView):
    "A device of a box: turnstile, reader, camera, as its box reports it."
    __name__ = 'scenic.gate.device'
    box = fields.Many2One(
        'scenic.gate.box', "Box", required=True, ondelete='CASCADE')
    kind = fields.Selection(DEVICE_KINDS, "Kind", required=True)
    name = fields.Char("Name", required=True)
    ok = fields.Boolean("OK", readonly=True)
    errors = fields.Integer("Errors", readonly=True)
    last_report = fields.DateTime("Last Report", readonly=True)
    paper = fields.Selection([
            (None, ""),
            ('ok', "OK"),
            ('low', "Low"),
            ('out', "Out"),
            ], "Paper", readonly=True,
        help="A ticket printer's paper (windows and kiosks).")
    last_error = fields.Char("Last Error", readonly=True,
        help="The device's last error as its box reported it.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('box')
        t = cls.__table__()
        cls._sql_constraints += [
            ('device_unique', Unique(t, t.box, t.kind, t.name),
                'scenic_gate.msg_device_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))


    @classmethod
    def view_attributes(cls):
        return super().view_attributes() + [
            ('/tree', 'visual', If(Eval('ok', False), '', 'danger')),
            ]

class EnrolmentTokenShow(ModelView):
    "Enrolment Token"
    __name__ = 'scenic.gate.box.enrolment_token.show'
    box = fields.Many2One('scenic.gate.box', "Box", readonly=True)
    token = fields.Char(
        "Enrolment Token", readonly=True,
        help="Enter this token on the box now: it is not shown again and "
        "works once.")
    expires = fields.DateTime("Valid Until", readonly=True)


class EnrolmentToken(Wizard):
    "Enrolment Token"
    __name__ = 'scenic.gate.box.enrolment_token'
    start_state = 'show'
    show = StateView('scenic.gate.box.enrolment_token.show',
        'scenic_gate.box_enrolment_token_show_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def default_show(self, fields):
        token, expires = self.record.new_enrolment_token()
        return {
            'box': self.record.id,
            'token': token,
            'expires': expires,
            }
