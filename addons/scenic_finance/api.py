"""The small Python API other modules post through.

Payment recording (box office #10, partner API #11) writes `scenic.payment`
rows as today; the ledger posts them in the next daily batch:

- `provider` names the method: one of `rule.METHODS` ('cash', 'wechat',
  'alipay', 'unionpay', 'simulated', 'partner_credit'); the area's posting
  rule says which account it debits (`method_account`).
- A method whose account needs a party (partner credit → 1122 应收账款)
  needs `finance_party` on the payment: `party_values(party)` gives the
  column to add to the inserted row.
- Refunds are `kind='refund'` rows with the original method; the tickets
  they give back are those of the order in state revoked/cancelled.

`setup_area` gives a scenic area the Chinese chart, fiscal years and a
posting rule (demo, tests, benchmark); `post_days` posts ended days.
"""
import datetime as dt

from trytond.pool import Pool
from trytond.transaction import Transaction

from .posting import area_today, post_days  # noqa: F401
from .rule import METHODS

METHOD_ACCOUNTS = {
    'cash': '1001', 'wechat': '101201', 'alipay': '101202',
    'unionpay': '101203', 'simulated': '1012', 'partner_credit': '1122',
    }


def method_account(company, method):
    "The account a payment method debits in this area."
    Rule = Pool().get('scenic.finance.rule')
    return Rule.for_company(company).method_account(method)


def party_values(party):
    "The column a payment row carries for a method posting to a party."
    return {'finance_party': int(party) if party else None}


def setup_area(company, years=None, vat='vat_6', language=None):
    """Chinese chart (if the area has no accounts yet), fiscal years with
    monthly periods for `years` (default: this one) and a posting rule."""
    pool = Pool()
    Account = pool.get('account.account')
    Rule = pool.get('scenic.finance.rule')
    Tax = pool.get('account.tax')
    ModelData = pool.get('ir.model.data')
    Journal = pool.get('account.journal')
    FiscalYear = pool.get('account.fiscalyear')
    from scenic_account_cn.chart import accounts_by_code, create_chart
    with Transaction().set_context(company=company.id):
        if not Account.search([('company', '=', company.id)], limit=1):
            create_chart(company, language=language)
        for year in sorted(years or {area_today(company).year}):
            if not FiscalYear.search([('company', '=', company.id),
                        ('start_date', '=', dt.date(year, 1, 1))]):
                create_fiscalyear(company, year)
        rules = Rule.search([('company', '=', company.id)])
        if rules:
            return rules[0]
        accounts = accounts_by_code(company)
        tax = None
        if vat:
            tax = Tax.search([('company', '=', company.id),
                    ('template', '=', ModelData.get_id(
                            'scenic_account_cn', f'tax_template_cn_{vat}')),
                    ], limit=1)
        statement_journals = create_statement_journals(company, accounts)
        rule, = Rule.create([{
                    'company': company.id,
                    'journal': Journal(ModelData.get_id(
                            'account', 'journal_revenue')).id,
                    'deferred_account': accounts['2203'].id,
                    'revenue_account': accounts['5001'].id,
                    'other_revenue_account': accounts['5051'].id,
                    'other_categories': ['combo'],
                    'tax': tax[0].id if tax else None,
                    'fee_account': accounts['5603'].id,
                    'difference_account': accounts['5051'].id,
                    'cash_pending_account': accounts['1901'].id,
                    'cash_loss_account': accounts['5711'].id,
                    'cash_gain_account': accounts['5301'].id,
                    'methods': [('create', [{
                                    'method': m,
                                    'account': accounts[METHOD_ACCOUNTS[m]].id,
                                    'statement_journal': statement_journals.get(m)}
                                for m, _ in METHODS])],
                    }])
        return rule


def create_statement_journals(company, accounts):
    "A statement journal per wallet, paying out to 1002 银行存款."
    pool = Pool()
    StatementJournal = pool.get('account.statement.journal')
    Journal = pool.get('account.journal')
    ModelData = pool.get('ir.model.data')
    from .wallet import WALLETS
    journal = Journal(ModelData.get_id('account_statement', 'journal_statement'))
    result = {}
    for method, name in WALLETS:
        record, = StatementJournal.create([{
                    'name': name, 'journal': journal.id,
                    'currency': company.currency.id, 'company': company.id,
                    'validation': 'amount', 'account': accounts['1002'].id}])
        result[method] = record.id
    return result


def create_fiscalyear(company, year):
    pool = Pool()
    FiscalYear = pool.get('account.fiscalyear')
    Sequence = pool.get('ir.sequence.strict')
    SequenceType = pool.get('ir.sequence.type')
    ModelData = pool.get('ir.model.data')
    sequence_type = SequenceType(ModelData.get_id(
            'account', 'sequence_type_account_move'))
    sequence, = Sequence.create([{
                'name': f"{year}", 'sequence_type': sequence_type.id,
                'company': company.id}])
    fiscalyear, = FiscalYear.create([{
                'name': f"{year}", 'company': company.id,
                'start_date': dt.date(year, 1, 1),
                'end_date': dt.date(year, 12, 31),
                'move_sequence': sequence.id}])
    FiscalYear.create_period([fiscalyear])
    return fiscalyear
