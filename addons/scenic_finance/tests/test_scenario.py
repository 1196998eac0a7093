"""The scenario doctests, for unittest (load_tests) and for pytest, which
does not call load_tests: one test case runs the same suite."""
import unittest

from trytond.tests.test_tryton import load_doc_tests


def load_tests(*args, **kwargs):
    return load_doc_tests(__name__, __file__, *args, **kwargs)


class ScenarioTestCase(unittest.TestCase):
    "Run scenario_*.rst"

    def test_scenarios(self):
        loader = unittest.TestLoader()
        suite = load_doc_tests(
            __name__, __file__, loader, unittest.TestSuite(), None)
        self.assertTrue(suite.countTestCases())
        result = unittest.TextTestRunner(verbosity=0).run(suite)
        problems = result.failures + result.errors
        self.assertFalse(problems, '\n'.join(text for _, text in problems))
