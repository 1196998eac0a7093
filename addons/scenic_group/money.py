"""The partner's account: what it owes for its groups, checked against its
contract when an order is confirmed.

Each partner has a sub-ledger of entries (positive: the partner owes more;
negative: it paid, or put money on deposit): the operational record its
monthly statement and invoice are made from. With scenic_finance,
account_credit_limit and account_deposit activated the money itself is on
the ledger and the checks read it there (see credit.py): finance posts the
orders paid on account to the partner's 1122 应收账款, a deposit top-up
is posted to its 220301 预收账款-合作方预存款 and drawn down, to 1122, when
an order is paid; a partner paying its invoice frees credit. Without them
the checks read the entries.
"""
from decimal import Decimal

from sql.aggregate import Sum
from sql.conditionals import Coalesce

from scenic_ticket.area import CompanyMixin
from scenic_ticket.slot import area_today

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from .exceptions import DepositError, LedgerAccountError

CENT = Decimal('0.01')
DEPOSIT_ACCOUNT = '220301'
DEPOSIT_TERMS = ('deposit', 'prepaid')
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
        "Add an entry; return it."
        from scenic_ticket.dbtools import insert as _insert
        table = cls.__table__()
        entry_id, = _insert(table, [{
                    'company': partner.company.id, 'partner': partner.id,
                    'date': date or area_today(partner.company), 'kind': kind,
                    'amount': amount,
                    'order': order.id if order else None,
                    'description': description,
                    }])
        return cls(entry_id)


def on_ledger():
    "Whether the partners' money is kept on the ledger (see credit.py)."
    pool = Pool()
    try:
        pool.get('scenic.finance.rule')
    except KeyError:
        return False
    fields_ = pool.get('party.party')._fields
    return 'credit_amount' in fields_ and 'deposit' in fields_


def balance(partner):
    """What the partner owes net of its deposit (negative: deposit left),
    as its confirmations are checked: on the ledger when it is kept there,
    else its entries."""
    pool = Pool()
    if not on_ledger():
        return pool.get('scenic.group.entry').balance(partner)
    from scenic_ticket.dbtools import forget
    Party = pool.get('party.party')
    # Function fields read earlier in the transaction are cached.
    forget('party.party')
    with Transaction().set_context(company=partner.company.id):
        party = Party(partner.party.id)
        return Party.get_credit_amount(
            [party], 'credit_amount')[party.id].quantize(CENT)


def deposit_balance(partner):
    "The partner's deposit on the ledger (None when not kept there)."
    if not on_ledger():
        return None
    Party = Pool().get('party.party')
    with Transaction().set_context(company=partner.company.id):
        return Party.get_deposit(
            [Party(partner.party.id)], 'deposit')[partner.party.id]


def ledger_account(company, code):
    "The area's account of that code, or a clear error."
    Account = Pool().get('account.account')
    accounts = Account.search([
            ('company', '=', company.id), ('code', '=', code)], limit=1)
    if not accounts:
        raise LedgerAccountError(gettext(
                'scenic_group.msg_ledger_account_missing',
                code=code, company=company.rec_name))
    return accounts[0]


def sync_credit_limit(contracts):
    """The credit limit of an active contract is its party's, which
    account_credit_limit checks (and Tryton's own flows with it)."""
    pool = Pool()
    Party = pool.get('party.party')
    if 'credit_limit_amount' not in Party._fields:
        return
    for contract in contracts:
        if contract.payment_term != 'credit':
            continue
        with Transaction().set_context(company=contract.company.id):
            party = Party(contract.partner.party.id)
            party.credit_limit_amount = contract.credit_limit
            party.save()


def check_confirmation(partner, contract, order, amount, override=False):
    """Refuse to confirm an order the contract does not allow to charge.

    The caller holds the partner's lock, so concurrent confirmations see
    each other's charges (READ COMMITTED) and a limit is never passed.
    """
    from .booking import PartnerError
    from .exceptions import CreditLimitWarning
    if contract is None:
        raise PartnerError('no_contract',
            "You have no active contract for that date.")
    owed = balance(partner)
    after = owed + amount
    term = contract.payment_term
    if term in DEPOSIT_TERMS and after > 0:
        raise PartnerError('deposit_insufficient',
            f"Your deposit covers {-owed if owed < 0 else 0} of "
            f"{amount}: top it up first.", 'amount')
    if term == 'credit' and after > contract.credit_limit:
        if contract.over_credit == 'warn' and override:
            return
        if contract.over_credit == 'warn' and Transaction().user:
            if on_ledger():
                # Tryton's check: refused, or for its group_credit_limit
                # (supervisors) a warning they may skip.
                with Transaction().set_context(
                        company=partner.company.id,
                        _scenic_partner_locked=True):
                    party = Pool().get('party.party')(partner.party.id)
                    party.check_credit_limit(amount, partner.company,
                        origin=order)
                return
            # Back office: a warning a supervisor may skip.
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


def _post_move(partner, entry, date, lines, description):
    "A posted move of the partner's money, its origin the entry."
    pool = Pool()
    Move = pool.get('account.move')
    Period = pool.get('account.period')
    Rule = pool.get('scenic.finance.rule')
    company = partner.company
    rule = Rule.for_company(company)
    with Transaction().set_context(company=company.id):
        period = Period.find(company, date=date)
        move = Move(company=company, period=period, journal=rule.journal,
            date=date, origin=entry, description=description,
            lines=[dict(l, account=l['account'].id,
                    party=(partner.party.id if l['account'].party_required
                        else None))
                for l in lines])
        move.save()
        Move.post([move])
    return move


def move_deposit(partner, entry, amount, date=None):
    """Draw `amount` of the partner's deposit for an order it paid on its
    account (negative: give it back for a refund): 220301 is debited and
    the partner's 1122, where finance posts the order, credited."""
    pool = Pool()
    Rule = pool.get('scenic.finance.rule')
    company = partner.company
    receivable = Rule.for_company(company).method_account('partner_credit')
    deposit = ledger_account(company, DEPOSIT_ACCOUNT)
    debit, credit = (amount, 0) if amount > 0 else (0, -amount)
    return _post_move(partner, entry, date or area_today(company), [
            {'account': deposit, 'debit': debit, 'credit': credit},
            {'account': receivable, 'debit': credit, 'credit': debit},
            ], entry.description)


def top_up_deposit(partner, amount, account, date=None, description=None):
    """The partner put `amount` on deposit, received on `account` (a bank
    or wallet account): it is debited and the partner's 220301 credited,
    and the deposit shows on its statement."""
    Entry = Pool().get('scenic.group.entry')
    if amount is None or amount <= 0:
        raise DepositError(gettext('scenic_group.msg_deposit_amount',
                partner=partner.rec_name, amount=amount))
    if not on_ledger():
        raise DepositError(gettext('scenic_group.msg_deposit_no_ledger'))
    company = partner.company
    deposit = ledger_account(company, DEPOSIT_ACCOUNT)
    if account.company != company or account == deposit:
        raise DepositError(gettext('scenic_group.msg_deposit_account',
                account=account.rec_name))
    date = date or area_today(company)
    amount = Decimal(amount).quantize(CENT)
    entry = Entry.record(partner, 'deposit', -amount, date=date,
        description=description or gettext('scenic_group.msg_deposit_top_up'))
    _post_move(partner, entry, date, [
            {'account': account, 'debit': amount, 'credit': 0},
            {'account': deposit, 'debit': 0, 'credit': amount},
            ], entry.description)
    return entry


def record_charge(partner, order, date=None):
    """An order confirmed on the partner's account: on its statement, and
    drawn from its deposit when it buys against one."""
    entry = Pool().get('scenic.group.entry').record(partner, 'charge',
        order.total, order=order, date=date or order.visit_date,
        description=order.reference)
    _follow_deposit(partner, order, entry, order.total, date)
    return entry


def record_refund(partner, order, amount, date=None):
    """Money given back to the partner's account for an order: on its
    statement, and back on its deposit when it buys against one."""
    entry = Pool().get('scenic.group.entry').record(partner, 'refund',
        -amount, order=order, date=date, description=order.reference)
    _follow_deposit(partner, order, entry, -amount, date)
    return entry


def _follow_deposit(partner, order, entry, amount, date):
    contract = order.group_contract
    if (amount and contract and contract.payment_term in DEPOSIT_TERMS
            and on_ledger()):
        move_deposit(partner, entry, amount, date=date)
