"""Payments and refunds of orders, as finance posts them.

The lean booking path (reservation.py) writes these rows; the providers
that take the money are in providers.py.
"""
from trytond.model import ModelSQL, ModelView, fields
from trytond.modules.currency.fields import Monetary
from trytond.pyson import Eval

from .area import CompanyMixin


class Payment(CompanyMixin, ModelSQL, ModelView):
    "A payment or refund of an order, for finance to post."
    __name__ = 'scenic.payment'
    order = fields.Many2One(
        'scenic.order', "Order", required=True, readonly=True,
        ondelete='RESTRICT')
    kind = fields.Selection([
            ('payment', "Payment"),
            ('refund', "Refund"),
            ], "Kind", required=True, readonly=True)
    provider = fields.Char("Provider", required=True, readonly=True)
    provider_reference = fields.Char("Provider Reference", readonly=True)
    amount = Monetary(
        "Amount", currency='currency', digits='currency', required=True,
        readonly=True)
    currency = fields.Many2One(
        'currency.currency', "Currency", required=True, readonly=True)
    date = fields.DateTime("Date", required=True, readonly=True)
    refund_of = fields.Many2One(
        'scenic.payment', "Refund Of", readonly=True, ondelete='RESTRICT',
        domain=[('kind', '=', 'payment'), ('order', '=', Eval('order', -1))],
        states={'invisible': Eval('kind') != 'refund'},
        help="The payment this refund gives back: a payment refunded "
        "once is never refunded again.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [('date', 'DESC'), ('id', 'DESC')]
