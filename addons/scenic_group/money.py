"""The partner's account: what it owes for its groups, checked against its
contract when an order is confirmed.

Each partner has a sub-ledger of entries (positive: the partner owes more;
negative: it paid, or put money on deposit). Its balance is what the credit
limit and the deposit are checked against, and what the monthly statement
shows; finance posts the same entries to the partner's receivable (1122
with the party) through its posting rules.
"""
import datetime as dt
from decimal import Decimal

from sql.aggregate import Sum
from sql.conditionals import Coalesce

from scenic_ticket.area import CompanyMixin

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

CENT = Decimal('0.01')
ENTRY_KINDS = [
    ('charge', "Order"),
    ('refund', "Refund"),
    ('no_show', "No-Show Credit"),
    ('payment', "Payment"),
    ('deposit', "Deposit"),
    ('adjustment', "Adjustment"),
    ]


class Entry(CompanyMixin, ModelSQL, ModelView):
    "A movement on a partner's account."
    __name__ = 'scenic.group.entry'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True,
        ondelete='RESTRICT')
    date = fields.Date("Date", required=True)
    kind = fields.Selection(ENTRY_KINDS, "Kind", required=True)
    amount = fields.Numeric(
        "Amount", digits=(16, 2), required=True,
        help="Positive: the partner owes more; negative: it paid or put "
        "money on deposit.")
    order = fields.Many2One(
        'scenic.order', "Order", ondelete='RESTRICT')
    description = fields.Char("Description")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t,
                (t.partner, Index.Equality()), (t.date, Index.Range())))
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    @classmethod
    def balance(cls, partner, until=None):
        "What the partner owes (negative: what it has on deposit)."
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        where = table.partner == partner.id
        if until:
            where &= table.date <= until
        cursor.execute(*table.select(
                Coalesce(Sum(table.amount), 0), where=where))
        return Decimal(str(cursor.fetchone()[0] or 0)).quantize(CENT)

    @classmethod
    def record(cls, partner, kind, amount, order=None, date=None,
            description=None):
        from scenic_ticket.dbtools import insert as _insert
        table = cls.__table__()
        _insert(table, [{
                    'company': partner.company.id, 'partner': partner.id,
                    'date': date or dt.date.today(), 'kind': kind,
                    'amount': amount,
                    'order': order.id if order else None,
                    'description': description,
                    }])


def check_confirmation(partner, contract, order, amount, override=False):
    """Refuse to confirm an order the contract does not allow to charge.

    The caller holds the partner's lock, so concurrent confirmations see
    each other's charges (READ COMMITTED) and a limit is never passed.
    """
    from .booking import PartnerError
    from .exceptions import CreditLimitWarning
    Entry = Pool().get('scenic.group.entry')
    if contract is None:
        raise PartnerError('no_contract',
            "You have no active contract for that date.")
    balance = Entry.balance(partner)
    after = balance + amount
    term = contract.payment_term
    if term in ('deposit', 'prepaid') and after > 0:
        raise PartnerError('deposit_insufficient',
            f"Your deposit covers {-balance if balance < 0 else 0} of "
            f"{amount}: top it up first.", 'amount')
    if term == 'credit' and after > contract.credit_limit:
        if contract.over_credit == 'warn' and override:
            return
        if contract.over_credit == 'warn' and Transaction().user:
            # Back office: a warning a supervisor (group_credit_limit) may
            # skip, as Tryton's account_credit_limit does.
            Warning = Pool().get('res.user.warning')
            key = Warning.format('scenic_group_credit', [order])
            if Warning.check(key):
                raise CreditLimitWarning(key, gettext(
                        'scenic_group.msg_credit_limit_warning',
                        partner=partner.rec_name,
                        limit=contract.credit_limit, amount=after))
            return
        raise PartnerError('credit_limit',
            f"This order would take your balance to {after}, over your "
            f"credit limit of {contract.credit_limit}.", 'amount')


def record_charge(partner, order, date=None):
    Pool().get('scenic.group.entry').record(partner, 'charge', order.total,
        order=order, date=date or order.visit_date,
        description=order.reference)
