"""Ticket types: what a visitor buys, built on a Tryton product."""
from decimal import Decimal

from scenic_common import protocol

from trytond.i18n import gettext
from trytond.model import DeactivableMixin, ModelSQL, ModelView, Unique, fields
from trytond.modules.currency.fields import Monetary
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import without_check_access

from . import catalogue
from .area import CompanyMixin
from .exceptions import TicketTypeValidationError

CATEGORIES = [
    ('adult', "Adult"),
    ('child', "Child"),
    ('senior', "Senior"),
    ('student', "Student"),
    ('free', "Free by Policy"),
    ('combo', "Combo"),
    ('group', "Group"),
    ('annual_card', "Annual Card"),
    ('season_card', "Season Card"),
    ('count_card', "Count Card"),
    ('vip_card', "VIP Card"),
    ]
CARD_CATEGORIES = {'annual_card', 'season_card', 'count_card', 'vip_card'}

VALIDITIES = [
    ('fixed_date', "Fixed Date"),
    ('time_slot', "Time Slot"),
    ('days_from_first_use', "Days from First Use"),
    ('date_range', "Date Range"),
    ]

BINDINGS = [
    ('none', "None"),
    ('id_card', "ID Card"),
    ('photo', "Photo"),
    ('fingerprint', "Fingerprint"),
    ('face', "Face"),
    ]


class TicketType(CompanyMixin, DeactivableMixin, ModelSQL, ModelView):
    "What a visitor buys: who, where, when, how many entries."
    __name__ = 'scenic.ticket.type'
    name = fields.Char("Name", required=True, translate=True)
    code = fields.Char("Code", required=True)
    product = fields.Many2One(
        'product.product', "Product", readonly=True, ondelete='RESTRICT',
        context={'company': Eval('company', -1)}, depends={'company'},
        help="The service product sales and accounting use for this type; "
        "created with the ticket type.")
    category = fields.Selection(CATEGORIES, "Category", required=True)
    zones = fields.Many2Many(
        'scenic.ticket.type-scenic.zone', 'ticket_type', 'zone',
        "Zones Admitted",
        domain=[('company', '=', Eval('company', -1))])
    validity = fields.Selection(VALIDITIES, "Validity", required=True)
    validity_days = fields.Integer(
        "Valid Days",
        states={
            'invisible': Eval('validity') != 'days_from_first_use',
            'required': Eval('validity') == 'days_from_first_use',
            })
    valid_from = fields.Date(
        "Valid From",
        states={
            'invisible': Eval('validity') != 'date_range',
            'required': Eval('validity') == 'date_range',
            })
    valid_to = fields.Date(
        "Valid To",
        states={
            'invisible': Eval('validity') != 'date_range',
            'required': Eval('validity') == 'date_range',
            })
    entry_mode = fields.Selection([
            ('single', "Single Entry"),
            ('multiple', "Several Entries"),
            ('unlimited', "Unlimited within Validity"),
            ], "Entries", required=True)
    entries_allowed = fields.Integer(
        "Entries Allowed",
        states={
            'invisible': Eval('entry_mode') != 'multiple',
            'required': Eval('entry_mode') == 'multiple',
            })
    reentry_binding = fields.Selection(
        BINDINGS, "Re-entry Binding", required=True,
        help="How the ticket is bound to its holder at first entry, "
        "so that only that person re-enters.")
    persons = fields.Integer(
        "Persons per Ticket", required=True,
        help="How many people one ticket admits (group tickets).")
    real_name = fields.Boolean(
        "Real Name",
        help="Each person must give a name and an ID document.")
    id_limit = fields.Integer(
        "Tickets per ID per Day",
        states={'invisible': ~Eval('real_name')},
        help="How many tickets one ID may hold per day in this area; "
        "0 means no limit.")
    channels = fields.Many2Many(
        'scenic.ticket.type-scenic.channel', 'ticket_type', 'channel',
        "Channels", domain=[('company', '=', Eval('company', -1))],
        help="The channels that sell this type; none means all.")
    refund_rule = fields.Selection([
            ('until_start', "Until the Time Slot Starts"),
            ('until_day_before', "Until the Day Before"),
            ('never', "Not Refundable"),
            ], "Refunds", required=True,
        help="Until when visitors can cancel and get their money back.")
    base_price = Monetary(
        "Base Price", currency='currency', digits='currency', required=True,
        help="Price before the price rules apply, in the area's currency.")
    currency = fields.Function(
        fields.Many2One('currency.currency', "Currency"),
        'on_change_with_currency')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('code_unique', Unique(t, t.company, t.code),
                'scenic_ticket.msg_ticket_type_code_unique'),
            ]
        cls._order.insert(0, ('name', 'ASC'))

    @staticmethod
    def default_category():
        return 'adult'

    @staticmethod
    def default_validity():
        return 'time_slot'

    @staticmethod
    def default_entry_mode():
        return 'single'

    @staticmethod
    def default_reentry_binding():
        return 'none'

    @staticmethod
    def default_persons():
        return 1

    @staticmethod
    def default_real_name():
        return True

    @staticmethod
    def default_id_limit():
        return 1

    @staticmethod
    def default_refund_rule():
        return 'until_start'

    @staticmethod
    def default_base_price():
        return Decimal('0')

    @fields.depends('company')
    def on_change_with_currency(self, name=None):
        return self.company.currency if self.company else None

    @property
    def entries(self):
        "Entries a ticket gives: 0 means unlimited within validity."
        return protocol.entries_for(self.entry_mode, self.entries_allowed)

    @property
    def is_card(self):
        return self.category in CARD_CATEGORIES

    @classmethod
    def validate_fields(cls, types, field_names):
        super().validate_fields(types, field_names)
        for ttype in types:
            ttype.check_values()

    def _error(self, message, field, **kwargs):
        label = self.__class__.fields_get([field])[field]['string']
        return TicketTypeValidationError(gettext(
                message, type=self.rec_name, field=label, **kwargs))

    def check_values(self):
        if self.persons is None or self.persons < 1:
            raise self._error(
                'scenic_ticket.msg_ticket_type_persons_positive', 'persons')
        if self.category == 'group' and self.persons < 2:
            raise self._error(
                'scenic_ticket.msg_ticket_type_group_persons', 'persons')
        if self.base_price is not None and self.base_price < 0:
            raise self._error(
                'scenic_ticket.msg_ticket_type_price_negative', 'base_price')
        if (self.entry_mode == 'multiple'
                and (self.entries_allowed or 0) < 2):
            raise self._error(
                'scenic_ticket.msg_ticket_type_entries_multiple',
                'entries_allowed')
        if (self.validity == 'days_from_first_use'
                and (self.validity_days or 0) < 1):
            raise self._error(
                'scenic_ticket.msg_ticket_type_validity_days',
                'validity_days')
        if (self.validity == 'date_range' and self.valid_from
                and self.valid_to and self.valid_from > self.valid_to):
            raise self._error(
                'scenic_ticket.msg_ticket_type_date_range', 'valid_to')
        if self.real_name and (self.persons or 1) > 1:
            raise self._error(
                'scenic_ticket.msg_ticket_type_real_name_group', 'persons')
        if self.real_name and (self.id_limit or 0) < 0:
            raise self._error(
                'scenic_ticket.msg_ticket_type_id_limit', 'id_limit')
        if self.reentry_binding != 'none' and self.entry_mode == 'single':
            raise self._error(
                'scenic_ticket.msg_ticket_type_binding_single',
                'reentry_binding')

    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        catalogue.clear()

    @classmethod
    def create(cls, vlist):
        vlist = [v.copy() for v in vlist]
        for values in vlist:
            if not values.get('product'):
                values['product'] = cls._create_product(values).id
        return super().create(vlist)

    @classmethod
    def write(cls, *args):
        super().write(*args)
        actions = iter(args)
        renamed = []
        for types, values in zip(actions, actions):
            if 'name' in values:
                renamed.extend(types)
        if renamed:
            cls._sync_products(renamed)

    @classmethod
    @without_check_access
    def _create_product(cls, values):
        "Every ticket type sells as a service product."
        pool = Pool()
        Template = pool.get('product.template')
        Uom = pool.get('product.uom')
        ModelData = pool.get('ir.model.data')
        unit = Uom(ModelData.get_id('product', 'uom_unit'))
        template, = Template.create([{
                    'name': values.get('name') or values.get('code'),
                    'type': 'service',
                    'default_uom': unit.id,
                    # No product code: codes are unique in the whole
                    # database, ticket type codes only in their area.
                    'products': [('create', [{}])],
                    }])
        return template.products[0]

    @classmethod
    @without_check_access
    def _sync_products(cls, types):
        Template = Pool().get('product.template')
        for ttype in types:
            if ttype.product:
                Template.write(
                    [ttype.product.template], {'name': ttype.name})


class TicketTypeZone(ModelSQL):
    __name__ = 'scenic.ticket.type-scenic.zone'
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='CASCADE')
    zone = fields.Many2One(
        'scenic.zone', "Zone", required=True, ondelete='CASCADE')


class TicketTypeChannel(ModelSQL):
    __name__ = 'scenic.ticket.type-scenic.channel'
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='CASCADE')
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, ondelete='CASCADE')
