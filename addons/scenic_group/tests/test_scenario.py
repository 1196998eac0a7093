"""The scenario doctests (scenario_*.rst) of this module, under pytest
(one test method each) and Tryton's runner (load_tests): each runs as a
client does, through proteus, its steps in transactions of their own."""
import unittest
from pathlib import Path

from scenic_ticket.tests.test_scenario import scenario_test_case
from scenic_ticket.tests.tools import configure_pii_key

from trytond.tests.test_tryton import load_doc_tests


def load_tests(loader, tests, pattern):
    "Tryton's runner: the doctests only (ScenarioTestCase runs them too)."
    configure_pii_key()
    return load_doc_tests(
        __name__, __file__, loader, unittest.TestSuite(), pattern)


ScenarioTestCase = scenario_test_case(globals(), Path(__file__).parent)
