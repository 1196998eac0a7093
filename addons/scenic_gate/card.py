"""Annual, season, count and VIP cards read by their RFID UID at the gates."""
import datetime as dt
import re

from sql import Literal
from sql.operators import Equal

from scenic_ticket.area import CompanyMixin
from scenic_ticket.dbtools import utcnow
from scenic_ticket.ticket_type import BINDINGS, CARD_CATEGORIES
from scenic_ticket.workflow import StateMachine, transition

from trytond.i18n import gettext
from trytond.model import Exclude, Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval, If
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .exceptions import CardStateError, CardValidationError, DeletionError
from .gate import enrolled_boxes_exist


CARD_STATES = [
    ('active', "Active"),
    ('suspended', "Suspended"),
    ('lost', "Lost"),
    ('replaced', "Replaced"),
    ]
CARD_TRANSITIONS = {
    ('active', 'suspended'),
    ('suspended', 'active'),
    ('lost', 'active'),  # found again
    ('active', 'lost'),
    ('suspended', 'lost'),
    # A new card takes over (Card.replace_with).
    ('active', 'replaced'),
    ('suspended', 'replaced'),
    ('lost', 'replaced'),
    }
UID_RE = re.compile(r'^(?:[0-9A-F]{2}){4,10}$')


def normalize_uid(value):
    "RFID UIDs as upper-case hex without separators: 04A1B2C3D4."
    if not value:
        return value
    return re.sub(r'[\s:\-]', '', value).upper()


class Card(CompanyMixin, StateMachine, ModelSQL, ModelView):
    "A card that admits its holder for a period or a number of entries."
    __name__ = 'scenic.card'
    _rec_name = 'number'
    number = fields.Char(
        "UID", required=True,
        states={'readonly': Eval('id', -1) >= 0},
        help="The RFID UID of the card in hexadecimal, e.g. 04A1B2C3D4.")
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Card Type", required=True,
        ondelete='RESTRICT',
        domain=[
            ('company', '=', Eval('company', -1)),
            ('category', 'in', sorted(CARD_CATEGORIES)),
            ],
        states={'readonly': Eval('state') != 'active'})
    category = fields.Function(
        fields.Selection('get_categories', "Category"),
        'on_change_with_category')
    holder = fields.Many2One(
        'scenic.visitor', "Holder", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        states={'readonly': Eval('state') != 'active'})
    holder_hash = fields.Char("Holder Hash", readonly=True)
    valid_from = fields.DateTime("Valid From", required=True)
    valid_until = fields.DateTime(
        "Valid Until", required=True,
        domain=[If(Eval('valid_from') & Eval('valid_until'),
                ('valid_until', '>', Eval('valid_from')),
                ())])
    remaining = fields.Integer(
        "Entries Left",
        states={
            'invisible': Eval('category') != 'count_card',
            'required': Eval('category') == 'count_card',
            },
        help="What a count card still admits.")
    state = fields.Selection(
        CARD_STATES, "State", required=True, readonly=True, sort=False)
    state_changed_at = fields.Timestamp("State Changed At", readonly=True)
    replaced_by = fields.Many2One(
        'scenic.card', "Replaced By", readonly=True, ondelete='RESTRICT')
    binding_method = fields.Selection(
        BINDINGS, "Binding", required=True,
        help="How the card is bound to its holder.")
    binding_photo = fields.Binary(
        "Binding Photo", file_id='binding_photo_id',
        help="The holder's photo: gates show it to staff and compare it.")
    binding_photo_id = fields.Char("Binding Photo ID", readonly=True)
    binding_template = fields.Text(
        "Binding Template",
        help="The holder's biometric template or its reference, "
        "as the gates' matcher stores it.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('number_active_unique',
                Exclude(t, (t.company, Equal), (t.number, Equal),
                    where=t.state == Literal('active')),
                'scenic_gate.msg_card_number_unique'),
            ]
        cls._sql_indexes.update({
                Index(t, (t.company, Index.Equality()),
                    (t.write_date, Index.Range())),
                Index(t, (t.number, Index.Equality())),
                })
        cls._order = [('number', 'ASC'), ('id', 'DESC')]
        cls._transitions |= CARD_TRANSITIONS
        cls._buttons.update({
                'suspend': {
                    'invisible': ~Eval('state').in_(
                        cls.sources('suspended')),
                    'depends': ['state'],
                    },
                'reactivate': {
                    'invisible': ~Eval('state').in_(cls.sources('active')),
                    'depends': ['state'],
                    },
                'report_lost': {
                    'invisible': ~Eval('state').in_(cls.sources('lost')),
                    'depends': ['state'],
                    },
                'replace': {
                    'invisible': ~Eval('state').in_(
                        cls.sources('replaced')),
                    'depends': ['state'],
                    },
                })

    @classmethod
    def view_attributes(cls):
        return super().view_attributes() + [
            ('/tree', 'visual', If(Eval('state') != 'active', 'muted', '')),
            ]

    @staticmethod
    def default_state():
        return 'active'

    @staticmethod
    def default_binding_method():
        return 'none'

    @staticmethod
    def default_valid_from():
        return utcnow().replace(microsecond=0)

    @classmethod
    def get_categories(cls):
        TicketType = Pool().get('scenic.ticket.type')
        return TicketType.fields_get(['category'])['category']['selection']

    @fields.depends('ticket_type')
    def on_change_with_category(self, name=None):
        return self.ticket_type.category if self.ticket_type else None

    @fields.depends('ticket_type', 'valid_from', 'remaining')
    def on_change_ticket_type(self):
        ttype = self.ticket_type
        if not ttype:
            return
        if ttype.category == 'count_card' and self.remaining is None:
            self.remaining = ttype.entries_allowed or None
        start = self.valid_from or self.default_valid_from()
        if ttype.validity == 'date_range' and ttype.valid_to:
            self.valid_until = dt.datetime.combine(
                ttype.valid_to + dt.timedelta(days=1), dt.time())
        elif ttype.validity_days:
            self.valid_until = start + dt.timedelta(days=ttype.validity_days)

    @classmethod
    def _holder_values(cls, values):
        Visitor = Pool().get('scenic.visitor')
        values = values.copy()
        if 'number' in values:
            values['number'] = normalize_uid(values['number'])
        if 'holder' in values:
            values['holder_hash'] = (Visitor(values['holder']).id_hash
                if values['holder'] else None)
        if 'binding_photo' in values and not values['binding_photo']:
            values['binding_photo_id'] = None
        return values

    @classmethod
    def create(cls, vlist):
        now = utcnow()
        vlist = [cls._holder_values(v) for v in vlist]
        for values in vlist:
            values.setdefault('state_changed_at', now)
        return super().create(vlist)

    @classmethod
    def write(cls, *args):
        actions = iter(args)
        new_args = []
        for cards, values in zip(actions, actions):
            new_args.extend((cards, cls._holder_values(values)))
        super().write(*new_args)

    @classmethod
    def copy(cls, cards, default=None):
        default = default.copy() if default else {}
        default.setdefault('state', 'active')
        default.setdefault('replaced_by', None)
        default.setdefault('state_changed_at', None)
        return super().copy(cards, default=default)

    @classmethod
    def validate_fields(cls, cards, field_names):
        super().validate_fields(cards, field_names)
        for card in cards:
            card.check_values()

    def _error(self, message, field, **kwargs):
        label = self.__class__.fields_get([field])[field]['string']
        return CardValidationError(gettext(
                message, card=self.number, field=label, **kwargs))

    def check_values(self):
        if not self.number or not UID_RE.match(self.number):
            raise self._error('scenic_gate.msg_card_number_invalid',
                'number')
        if self.valid_until <= self.valid_from:
            raise self._error('scenic_gate.msg_card_dates', 'valid_until')
        if self.ticket_type.category == 'count_card':
            if self.remaining is None or self.remaining < 0:
                raise self._error('scenic_gate.msg_card_remaining',
                    'remaining')
        if self.ticket_type.company != self.company:
            raise self._error('scenic_gate.msg_card_wrong_area',
                'ticket_type')
        if self.holder and self.holder.company != self.company:
            raise self._error('scenic_gate.msg_card_wrong_area', 'holder')

    @classmethod
    def check_modification(cls, mode, cards, values=None, external=False):
        super().check_modification(
            mode, cards, values=values, external=external)
        if mode == 'delete':
            Scan = Pool().get('scenic.gate.scan')
            for card in cards:
                if (enrolled_boxes_exist(card.company.id)
                        or Scan.search([('card', '=', card.id)], limit=1)):
                    raise DeletionError(gettext(
                            'scenic_gate.msg_card_delete',
                            card=card.rec_name))

    @classmethod
    def transition_error(cls, card, to_state):
        return CardStateError(gettext(
                'scenic_gate.msg_card_state', card=card.rec_name,
                state=dict(CARD_STATES)[card.state]))

    @classmethod
    @ModelView.button
    @transition('suspended')
    def suspend(cls, cards):
        cls.write(cards, {'state_changed_at': utcnow()})

    @classmethod
    @ModelView.button
    @transition('active')
    def reactivate(cls, cards):
        cls.write(cards, {'state_changed_at': utcnow()})

    @classmethod
    @ModelView.button
    @transition('lost')
    def report_lost(cls, cards):
        cls.write(cards, {'state_changed_at': utcnow()})

    @classmethod
    @ModelView.button_action('scenic_gate.wizard_card_replace')
    def replace(cls, cards):
        pass

    def replace_with(self, number, reason='damaged'):
        """Issue a new card with UID number to the same holder.

        The old card stops at once: 'lost' when it was lost, 'replaced'
        otherwise. The new card has the old one's holder, binding, validity
        and entries left.
        """
        pool = Pool()
        Usage = pool.get('scenic.ticket.usage')
        state = 'lost' if reason == 'lost' else 'replaced'
        # A lost card replaced because it is lost stays lost.
        if self.state != state or not self.may_enter(self.state, 'replaced'):
            self.check_transition([self], state)
        number = normalize_uid(number)
        if number == self.number:
            raise self._error('scenic_gate.msg_card_same_number', 'number')
        # The old card leaves 'active' first: the UID constraint counts
        # active cards only.
        self.__class__.write([self], {
                'state': state, 'state_changed_at': utcnow()})
        new, = self.__class__.create([{
                    'company': self.company.id,
                    'number': number,
                    'ticket_type': self.ticket_type.id,
                    'holder': self.holder.id if self.holder else None,
                    'valid_from': self.valid_from,
                    'valid_until': self.valid_until,
                    'remaining': self.remaining,
                    'binding_method': self.binding_method,
                    'binding_photo': self.binding_photo,
                    'binding_template': self.binding_template,
                    }])
        self.__class__.write([self], {'replaced_by': new.id})
        Usage.copy_card_usage(self, new)
        return new


class CardReplaceStart(ModelView):
    "Replace Card"
    __name__ = 'scenic.card.replace.start'
    card = fields.Many2One('scenic.card', "Card", readonly=True)
    number = fields.Char(
        "New UID", required=True,
        help="The RFID UID of the new card.")
    reason = fields.Selection([
            ('lost', "Lost"),
            ('damaged', "Damaged or Exchanged"),
            ], "Reason", required=True,
        help="A lost card is refused at the gates as lost, "
        "another as replaced.")


class CardReplace(Wizard):
    "Replace Card"
    __name__ = 'scenic.card.replace'
    start = StateView('scenic.card.replace.start',
        'scenic_gate.card_replace_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Replace", 'replace', 'tryton-ok', default=True),
            ])
    replace = StateTransition()

    def default_start(self, fields):
        return {
            'card': self.record.id,
            'reason': 'lost' if self.record.state == 'lost' else 'damaged',
            }

    def transition_replace(self):
        self.record.replace_with(self.start.number, self.start.reason)
        return 'end'

    def end(self):
        return 'reload'
