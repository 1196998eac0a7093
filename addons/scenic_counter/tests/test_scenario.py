"""The scenario doctests (scenario_*.rst), under pytest and Tryton's runner."""
import doctest
import glob
import os
import unittest

from trytond.transaction import Transaction
from trytond.tests.test_tryton import (
    doctest_checker, doctest_setup, doctest_teardown, load_doc_tests)

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = (doctest.REPORT_ONLY_FIRST_FAILURE | doctest.ELLIPSIS
    | doctest.IGNORE_EXCEPTION_DETAIL | doctest.NORMALIZE_WHITESPACE)


def load_tests(*args, **kwargs):
    return load_doc_tests(__name__, __file__, *args, **kwargs)


class ScenarioTestCase(unittest.TestCase):
    "Run each scenario as one test (pytest does not call load_tests)"

    def test_scenarios(self):
        for path in sorted(glob.glob(os.path.join(HERE, 'scenario_*.rst'))):
            with self.subTest(os.path.basename(path)):
                suite = doctest.DocFileSuite(path, module_relative=False,
                    setUp=doctest_setup, tearDown=doctest_teardown,
                    encoding='utf-8', checker=doctest_checker,
                    optionflags=FLAGS)
                with open(os.devnull, 'w') as devnull:
                    result = unittest.TextTestRunner(stream=devnull).run(
                        suite)
                # A scenario that failed half-way leaves its transaction.
                while Transaction().database is not None:
                    Transaction().stop()
                self.assertTrue(result.wasSuccessful(), '\n'.join(
                        text for _, text in result.failures + result.errors))
