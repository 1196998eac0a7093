"""Price rules as records, and the price check that explains a price."""
from decimal import Decimal

from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, ModelSQL, ModelView, fields, sequence_ordered)
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.wizard import Button, StateView, Wizard

from . import catalogue, pricing
from .area import CompanyMixin, default_company
from .exceptions import PriceRuleValidationError
from .slot import WEEKDAYS


class PriceRule(
        CompanyMixin, DeactivableMixin, sequence_ordered('priority', "Priority"),
        ModelSQL, ModelView):
    "A change to the base price when its conditions match."
    __name__ = 'scenic.price.rule'
    name = fields.Char("Name", required=True, translate=True)
    method = fields.Selection([
            ('fixed', "Fixed Price"),
            ('percentage', "Percentage"),
            ('amount', "Amount"),
            ], "Method", required=True,
        help="Fixed sets the price; percentage and amount add to it "
        "(negative values are discounts).")
    value = fields.Numeric("Value", digits=(16, 2), required=True)
    final = fields.Boolean(
        "Final", help="No rule after this one applies.")
    ticket_types = fields.Many2Many(
        'scenic.price.rule-scenic.ticket.type', 'rule', 'ticket_type',
        "Ticket Types", domain=[('company', '=', Eval('company', -1))],
        help="None means every ticket type.")
    date_from = fields.Date("From Date")
    date_to = fields.Date("To Date")
    weekdays = fields.MultiSelection(
        WEEKDAYS, "Weekdays", help="None means every day of the week.")
    day_kind = fields.Selection([
            ('any', "Any Day"),
            ('holiday', "Public Holidays"),
            ('regular', "Days That Are Not Holidays"),
            ], "Day Kind", required=True)
    time_from = fields.Time(
        "Slots From", format='%H:%M',
        help="Applies to time slots starting at or after this time.")
    time_to = fields.Time(
        "Slots Before", format='%H:%M',
        help="Applies to time slots starting before this time.")
    channels = fields.Many2Many(
        'scenic.price.rule-scenic.channel', 'rule', 'channel', "Channels",
        domain=[('company', '=', Eval('company', -1))],
        help="None means every channel.")
    min_fill_ratio = fields.Numeric(
        "Minimum Fill Ratio", digits=(3, 2),
        help="Demand pricing: applies once this share of the slot is sold, "
        "e.g. 0.80.")

    @staticmethod
    def default_method():
        return 'percentage'

    @staticmethod
    def default_day_kind():
        return 'any'

    @staticmethod
    def default_final():
        return False

    @classmethod
    def validate_fields(cls, rules, field_names):
        super().validate_fields(rules, field_names)
        for rule in rules:
            rule.check_values()

    def _error(self, message, field):
        label = self.__class__.fields_get([field])[field]['string']
        return PriceRuleValidationError(gettext(
                message, rule=self.rec_name, field=label))

    def check_values(self):
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise self._error(
                'scenic_ticket.msg_price_rule_dates_inverted', 'date_to')
        if (self.time_from and self.time_to
                and self.time_from >= self.time_to):
            raise self._error(
                'scenic_ticket.msg_price_rule_times_inverted', 'time_to')
        if self.min_fill_ratio is not None and not (
                Decimal(0) <= self.min_fill_ratio <= Decimal(1)):
            raise self._error(
                'scenic_ticket.msg_price_rule_fill_ratio', 'min_fill_ratio')
        if self.method == 'fixed' and self.value < 0:
            raise self._error(
                'scenic_ticket.msg_price_rule_fixed_negative', 'value')
        if self.method == 'percentage' and self.value < -100:
            raise self._error(
                'scenic_ticket.msg_price_rule_percentage', 'value')

    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        catalogue.clear()

    def as_rule(self):
        return pricing.Rule(
            id=self.id, name=self.name, priority=self.priority or 0,
            method=self.method, value=self.value, final=bool(self.final),
            ticket_types=frozenset(t.id for t in self.ticket_types),
            date_from=self.date_from, date_to=self.date_to,
            weekdays=frozenset(int(d) for d in self.weekdays or []),
            day_kind=self.day_kind,
            time_from=self.time_from, time_to=self.time_to,
            channels=frozenset(c.id for c in self.channels),
            min_fill_ratio=self.min_fill_ratio)

    @classmethod
    def rules_for(cls, company):
        return [r.as_rule() for r in cls.search([
                    ('company', '=', company),
                    ])]

    @classmethod
    def quote(cls, ticket_type, day, slot=None, channel=None,
            fill_ratio=None):
        "Price a ticket type for a sale context; returns a pricing.Quote."
        CalendarDay = Pool().get('scenic.calendar.day')
        company = ticket_type.company
        holiday = CalendarDay.kinds_between(
            company.id, day, day).get(day) == 'holiday'
        ctx = pricing.SaleContext(
            ticket_type=ticket_type.id, day=day, holiday=holiday,
            slot_start=slot.start_time if slot else None,
            channel=channel.id if channel else None,
            fill_ratio=fill_ratio)
        return pricing.compute_price(
            ticket_type.base_price, cls.rules_for(company.id), ctx,
            digits=company.currency.digits)


class PriceRuleTicketType(ModelSQL):
    __name__ = 'scenic.price.rule-scenic.ticket.type'
    rule = fields.Many2One(
        'scenic.price.rule', "Rule", required=True, ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='CASCADE')


class PriceRuleChannel(ModelSQL):
    __name__ = 'scenic.price.rule-scenic.channel'
    rule = fields.Many2One(
        'scenic.price.rule', "Rule", required=True, ondelete='CASCADE')
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, ondelete='CASCADE')


class PriceCheck(ModelView):
    "Price Check"
    __name__ = 'scenic.price.check'
    company = fields.Many2One(
        'company.company', "Scenic Area", required=True, readonly=True)
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        domain=[('company', '=', Eval('company', -1))])
    date = fields.Date("Date", required=True)
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot",
        domain=[
            ('company', '=', Eval('company', -1)),
            ('date', '=', Eval('date', None)),
            ])
    channel = fields.Many2One(
        'scenic.channel', "Channel",
        domain=[('company', '=', Eval('company', -1))])
    fill_ratio = fields.Numeric(
        "Fill Ratio", digits=(3, 2),
        help="Share of the slot already sold, to try demand rules.")
    price = fields.Numeric("Price", digits=(16, 2), readonly=True)
    explanation = fields.Text("Explanation", readonly=True)

    @staticmethod
    def default_company():
        return default_company()

    @staticmethod
    def default_date():
        return Pool().get('ir.date').today()

    @fields.depends(
        'ticket_type', 'date', 'slot', 'channel', 'fill_ratio',
        methods=['_quote'])
    def on_change_with_price(self):
        quote = self._quote()
        return quote.price if quote else None

    @fields.depends(
        'ticket_type', 'date', 'slot', 'channel', 'fill_ratio',
        methods=['_quote'])
    def on_change_with_explanation(self):
        quote = self._quote()
        return quote.explanation() if quote else None

    @fields.depends('ticket_type', 'date', 'slot', 'channel', 'fill_ratio')
    def _quote(self):
        if not self.ticket_type or not self.date:
            return None
        PriceRule = Pool().get('scenic.price.rule')
        return PriceRule.quote(
            self.ticket_type, self.date, slot=self.slot,
            channel=self.channel, fill_ratio=self.fill_ratio)


class PriceCheckWizard(Wizard):
    "Price Check"
    __name__ = 'scenic.price.check.wizard'
    start = StateView('scenic.price.check',
        'scenic_ticket.price_check_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])
