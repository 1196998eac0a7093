"""A partner's credit and deposit on the ledger, through Tryton's
account_credit_limit and account_deposit.

Registered only when those two and scenic_finance are activated; without
them the checks read the partner's entries (money.Entry).

What a partner owes (party.credit_amount, which account_credit_limit
checks against party.credit_limit_amount):

- its receivable on the ledger (1122 with its children, as Tryton sums
  receivable accounts), so a partner paying its invoice frees credit;
- plus its orders paid on account that finance has not posted yet
  (partner-credit payments and refunds no posting has carried yet);
- less its deposit (220301, a deposit account type of account_deposit).

The pending orders are read before the ledger: a posting batch committing
between the two reads is then counted twice (too cautious), never missed.
"""
from decimal import Decimal

from sql import Null
from sql.aggregate import Sum
from sql.conditionals import Case

from trytond.model import ModelView, fields
from trytond.modules.currency.fields import Monetary
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .booking import PARTNER_PROVIDER


def pending_on_account(party_ids, company_id):
    "Per party: partner-credit payments less refunds not posted yet."
    table = Pool().get('scenic.payment').__table__()
    cursor = Transaction().connection.cursor()
    result = {}
    if not party_ids or not company_id:
        return result
    Payment = Pool().get('scenic.payment')
    cursor.execute(*table.select(table.finance_party,
            Sum(Case((table.kind == 'refund', -table.amount),
                    else_=table.amount)),
            where=(table.provider == PARTNER_PROVIDER)
            & (table.company == company_id)
            & table.finance_party.in_(list(party_ids))
            & ~Payment.finance_posted_where(table, company_id),
            group_by=[table.finance_party]))
    for party_id, amount in cursor:
        result[party_id] = Decimal(str(amount or 0))
    return result


class Party(metaclass=PoolMeta):
    __name__ = 'party.party'

    @classmethod
    def get_credit_amount(cls, parties, name):
        pool = Pool()
        User = pool.get('res.user')
        user = User(Transaction().user)
        company = user.company
        pending = pending_on_account(
            [p.id for p in parties], company.id if company else None)
        amounts = super().get_credit_amount(parties, name)
        deposits = cls.get_deposit(parties, 'deposit')
        result = {}
        for party in parties:
            amount = (amounts.get(party.id) or Decimal(0)) + pending.get(
                party.id, Decimal(0)) - (deposits.get(party.id)
                or Decimal(0))
            result[party.id] = (company.currency.round(amount) if company
                else amount)
        return result

    @classmethod
    def _credit_limit_to_lock(cls):
        # A partner's confirmations run under its row's lock
        # (booking.lock_partner): no need to lock the whole ledger.
        if Transaction().context.get('_scenic_partner_locked'):
            return []
        return super()._credit_limit_to_lock()


class Move(metaclass=PoolMeta):
    __name__ = 'account.move'

    @classmethod
    def _get_origin(cls):
        return super()._get_origin() + ['scenic.group.entry']


class TopUpStart(ModelView):
    "Top Up Deposit"
    __name__ = 'scenic.group.deposit.top_up.start'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True, readonly=True)
    company = fields.Many2One('company.company', "Company", readonly=True)
    currency = fields.Many2One(
        'currency.currency', "Currency", readonly=True)
    deposit = Monetary("Deposit Now", currency='currency',
        digits='currency', readonly=True)
    amount = Monetary("Amount", currency='currency', digits='currency',
        required=True)
    account = fields.Many2One('account.account', "Received On",
        required=True, help="The bank or wallet account the money came in.",
        domain=[
            ('company', '=', Eval('company', -1)),
            ('type', '!=', None),
            ('type.deposit', '!=', True),
            ('closed', '!=', True),
            ])
    date = fields.Date("Date", required=True)
    description = fields.Char("Description")


class TopUp(Wizard):
    "Top Up Deposit"
    __name__ = 'scenic.group.deposit.top_up'
    start = StateView('scenic.group.deposit.top_up.start',
        'scenic_group.deposit_top_up_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Top Up", 'top_up', 'tryton-ok', default=True),
            ])
    top_up = StateTransition()

    def default_start(self, fields):
        from .money import deposit_balance
        partner = self.record
        company = partner.company
        with Transaction().set_context(company=company.id):
            today = Pool().get('ir.date').today()
        return {
            'partner': partner.id, 'company': company.id,
            'currency': company.currency.id,
            'deposit': deposit_balance(partner), 'date': today,
            }

    def transition_top_up(self):
        from .money import top_up_deposit
        top_up_deposit(self.record, self.start.amount, self.start.account,
            date=self.start.date, description=self.start.description)
        return 'end'
