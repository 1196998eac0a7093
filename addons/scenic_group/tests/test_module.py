from trytond.modules.company.tests import CompanyTestMixin
from trytond.tests.test_tryton import ModuleTestCase

from scenic_ticket.tests.tools import configure_pii_key


class ScenicGroupTestCase(CompanyTestMixin, ModuleTestCase):
    "Test scenic_group module"
    module = 'scenic_group'
    # Invoicing and dunning are extras (invoice.py, invoice.xml).
    extras = ['scenic_finance', 'account_invoice', 'account_dunning',
        'account_credit_limit', 'account_deposit']

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()


del ModuleTestCase
