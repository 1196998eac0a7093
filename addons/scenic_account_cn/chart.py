"""Create the Chinese chart for a company through Tryton's own wizard
("Create Chart of Accounts"), as an accountant would in the client."""
from trytond.pool import Pool
from trytond.transaction import Transaction

ROOT = 'account_template_cn_root'


def create_chart(company, language=None):
    """Run account.create_chart with the Chinese template for company.

    Receivable and payable defaults are 1122 and 2202. The wizard names the
    accounts in the database's default language; `language` sets it for the
    time of the wizard (e.g. 'zh_CN' on a database whose default is 'en').
    """
    pool = Pool()
    Configuration = pool.get('ir.configuration')
    if language:
        config = Configuration(1)
        previous = config.language
        Configuration.write([config], {'language': language})
        try:
            with Transaction().set_context(language=language):
                return create_chart(company)
        finally:
            Configuration.write([config], {'language': previous})
    AccountTemplate = pool.get('account.account.template')
    Account = pool.get('account.account')
    ModelData = pool.get('ir.model.data')
    CreateChart = pool.get('account.create_chart', type='wizard')
    with Transaction().set_context(company=company.id):
        template = AccountTemplate(ModelData.get_id('scenic_account_cn', ROOT))
        session_id, _, _ = CreateChart.create()
        wizard = CreateChart(session_id)
        wizard.account.account_template = template
        wizard.account.company = company
        wizard.transition_create_account()
        accounts = {a.code: a for a in Account.search([
                    ('company', '=', company.id),
                    ('code', 'in', ['1122', '2202']),
                    ])}
        wizard.properties.company = company
        wizard.properties.account_receivable = accounts['1122']
        wizard.properties.account_payable = accounts['2202']
        wizard.transition_create_properties()
        CreateChart.delete(session_id)


def accounts_by_code(company):
    Account = Pool().get('account.account')
    return {a.code: a for a in Account.search([
                ('company', '=', company.id), ('code', '!=', None)])}
