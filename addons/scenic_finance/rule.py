"""Posting rules as data: per scenic area, which accounts the daily
postings use. Finance edits them in the client; validation refuses a rule
that would post money into the wrong kind of account."""
from decimal import Decimal

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval

from scenic_ticket.area import CompanyMixin
from scenic_ticket.ticket_type import CATEGORIES

from .exceptions import PostingRuleError

# What scenic.payment.provider holds, and the names finance sees.
METHODS = [
    ('cash', "Cash"),
    ('wechat', "WeChat Pay"),
    ('alipay', "Alipay"),
    ('unionpay', "UnionPay Card"),
    ('simulated', "Simulated Provider"),
    ('partner_credit', "Partner Credit"),
    ]

_account_domain = [('company', '=', Eval('company', -1)),
    ('type', '!=', None), ('closed', '!=', True)]


class PostingRule(CompanyMixin, ModelSQL, ModelView):
    "Posting Rule"
    __name__ = 'scenic.finance.rule'
    journal = fields.Many2One('account.journal', "Journal", required=True)
    deferred_account = fields.Many2One(
        'account.account', "Deferred Revenue Account", required=True,
        domain=_account_domain,
        help="Money received for tickets not yet used (2203 预收账款).")
    revenue_account = fields.Many2One(
        'account.account', "Main Revenue Account", required=True,
        domain=_account_domain,
        help="Revenue earned when tickets are used or expire "
        "(5001 主营业务收入).")
    other_revenue_account = fields.Many2One(
        'account.account', "Other Revenue Account", required=True,
        domain=_account_domain,
        help="Revenue of the other categories, and what a refund keeps or "
        "gives back beyond the deferred amount (5051 其他业务收入).")
    other_categories = fields.MultiSelection(
        CATEGORIES, "Other Revenue Categories",
        help="Ticket categories whose revenue goes to the other account.")
    tax = fields.Many2One(
        'account.tax', "VAT", domain=[('company', '=', Eval('company', -1)),
            ('type', '=', 'percentage'), ('parent', '=', None)],
        help="The area's VAT regime on tickets (6 %, 3 % simplified or 1 % "
        "small-scale); empty when tickets bear no VAT.")
    fee_account = fields.Many2One(
        'account.account', "Fee Account", required=True,
        domain=_account_domain,
        help="Payment providers' fees (5603 财务费用).")
    difference_account = fields.Many2One(
        'account.account', "Difference Account", required=True,
        domain=_account_domain,
        help="Where a payment that differs from its tickets' prices "
        "posts the difference.")
    cash_pending_account = fields.Many2One(
        'account.account', "Cash Difference Account",
        domain=_account_domain,
        help="Cash short or over at the box office until approved "
        "(1901 待处理财产损溢).")
    cash_loss_account = fields.Many2One(
        'account.account', "Cash Shortage Account", domain=_account_domain,
        help="An approved cash shortage (5711 营业外支出).")
    cash_gain_account = fields.Many2One(
        'account.account', "Cash Overage Account", domain=_account_domain,
        help="An approved cash overage (5301 营业外收入).")
    methods = fields.One2Many(
        'scenic.finance.rule.method', 'rule', "Payment Methods")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('company_unique', Unique(t, t.company),
                'scenic_finance.msg_rule_company_unique'),
            ]

    @classmethod
    def validate_fields(cls, rules, field_names):
        super().validate_fields(rules, field_names)
        for rule in rules:
            rule.check_accounts()

    def check_accounts(self):
        def fail(field, reason):
            raise PostingRuleError(gettext(
                    'scenic_finance.msg_rule_account_' + reason,
                    account=getattr(self, field).rec_name,
                    field=self.__class__.fields_get([field])[field][
                        'string']))
        if self.deferred_account.type.statement != 'balance':
            fail('deferred_account', 'not_balance')
        for field in ['revenue_account', 'other_revenue_account']:
            type_ = getattr(self, field).type
            if type_.statement != 'income' or not type_.revenue:
                fail(field, 'not_revenue')
        for field in ['fee_account', 'difference_account',
                'cash_loss_account', 'cash_gain_account']:
            account = getattr(self, field)
            if account and account.type.statement != 'income':
                fail(field, 'not_income')
        if (self.cash_pending_account
                and self.cash_pending_account.type.statement != 'balance'):
            fail('cash_pending_account', 'not_balance')

    @classmethod
    def write(cls, *args):
        """A tax of another rate: the whole tickets the area has deferred
        get a row at the old rate first (posting.Earning.freeze), so that
        they leave 2203 with what they were deferred with."""
        from .posting import Earning
        Tax = Pool().get('account.tax')
        actions = iter(args)
        for rules, values in zip(actions, actions):
            if 'tax' not in values:
                continue
            rate = Tax(values['tax']).rate if values['tax'] else Decimal(0)
            for rule in rules:
                if rule.vat_rate != rate:
                    Earning.freeze_area(rule.company, rule.vat_rate)
        super().write(*args)

    @classmethod
    def for_company(cls, company):
        rules = cls.search([('company', '=', int(company))], limit=1)
        if not rules:
            raise PostingRuleError(gettext(
                    'scenic_finance.msg_rule_missing',
                    company=Pool().get('company.company')(
                        int(company)).rec_name))
        return rules[0]

    def method_account(self, method):
        "The account a payment method debits (its money or receivable)."
        for line in self.methods:
            if line.method == method:
                return line.account
        raise PostingRuleError(gettext(
                'scenic_finance.msg_rule_method_missing', method=method,
                company=self.company.rec_name))

    def statement_journal(self, method):
        for line in self.methods:
            if line.method == method and line.statement_journal:
                return line.statement_journal
        raise PostingRuleError(gettext(
                'scenic_finance.msg_rule_statement_journal_missing',
                method=method, company=self.company.rec_name))

    def revenue_account_for(self, category):
        if category in (self.other_categories or ()):
            return self.other_revenue_account
        return self.revenue_account

    @property
    def vat_rate(self):
        return self.tax.rate if self.tax else Decimal(0)


class Tax(metaclass=PoolMeta):
    __name__ = 'account.tax'

    @classmethod
    def write(cls, *args):
        """The rate of a tax a posting rule uses is not edited: tickets
        deferred at it are earned and refunded at it (a new tax, then the
        rule switched to it, keeps them at their rate)."""
        Rule = Pool().get('scenic.finance.rule')
        actions = iter(args)
        for taxes, values in zip(actions, actions):
            if 'rate' not in values:
                continue
            for tax in taxes:
                if tax.rate == values['rate']:
                    continue
                rules = Rule.search([('tax', '=', tax.id)], limit=1)
                if rules:
                    raise PostingRuleError(gettext(
                            'scenic_finance.msg_rule_tax_rate',
                            tax=tax.rec_name,
                            rule=rules[0].company.rec_name))
        super().write(*args)


class PostingRuleMethod(ModelSQL, ModelView):
    "Posting Rule Payment Method"
    __name__ = 'scenic.finance.rule.method'
    rule = fields.Many2One(
        'scenic.finance.rule', "Rule", required=True, ondelete='CASCADE')
    method = fields.Selection(METHODS, "Method", required=True)
    account = fields.Many2One(
        'account.account', "Account", required=True,
        domain=[('type', '!=', None), ('closed', '!=', True)],
        help="Debited when money comes in by this method: 1001 cash, "
        "101201 WeChat Pay …, 1122 for partner credit.")
    statement_journal = fields.Many2One(
        'account.statement.journal', "Statement Journal",
        domain=[('company', '=', Eval('_parent_rule', {}).get('company', -1))],
        help="Where the wallet's daily settlement files are imported.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('rule')
        t = cls.__table__()
        cls._sql_constraints += [
            ('method_unique', Unique(t, t.rule, t.method),
                'scenic_finance.msg_rule_method_unique'),
            ]

    @classmethod
    def validate_fields(cls, lines, field_names):
        super().validate_fields(lines, field_names)
        for line in lines:
            if line.account.type.statement != 'balance':
                raise PostingRuleError(gettext(
                        'scenic_finance.msg_rule_method_not_balance',
                        account=line.account.rec_name, method=line.method))
