"Scenario doctests of scenic_group, run in one test transaction each."
import doctest
import unittest
from pathlib import Path

from scenic_ticket.tests.tools import configure_pii_key

from trytond.tests.test_tryton import activate_module, with_transaction

HERE = Path(__file__).parent


class ScenarioTestCase(unittest.TestCase):
    "Scenarios of scenic_group"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_group')

    def run_scenario(self, name):
        failures, tests = doctest.testfile(str(HERE / name),
            module_relative=False, encoding='utf-8',
            optionflags=doctest.REPORT_ONLY_FIRST_FAILURE
            | doctest.ELLIPSIS)
        self.assertTrue(tests)
        self.assertEqual(failures, 0)

    @with_transaction()
    def test_scenario_agency_month(self):
        "An agency's month: deposit, three groups, statement, payment"
        self.run_scenario('scenario_agency_month.rst')

