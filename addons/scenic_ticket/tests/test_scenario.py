"""The scenario doctests (scenario_*.rst) of this module.

Tryton's runner calls `load_tests`; pytest does not, so one test method per
scenario runs the same doctest suite (`-k scenario_booking` picks one).
"""
import doctest
import os
import unittest
from pathlib import Path

from trytond import backend
from trytond.tests.test_tryton import (
    DB_NAME, STRIP_DECIMAL, doctest_checker, doctest_setup, doctest_teardown,
    load_doc_tests)
from trytond.transaction import Transaction

from .tools import configure_pii_key

HERE = Path(__file__).parent


def load_tests(loader, tests, pattern):
    "Tryton's runner: the doctests only (ScenarioTestCase runs them too)."
    configure_pii_key()
    return load_doc_tests(
        __name__, __file__, loader, unittest.TestSuite(), pattern)


def release_test_database():
    """On PostgreSQL a scenario drops and restores the test database: close
    this process's pool on it and end the sessions earlier tests left open
    (their threads' connections), or DROP DATABASE fails with ObjectInUse.
    Tryton's own runner starts each doctest in a fresh process instead."""
    if backend.name != 'postgresql':
        return
    pool = backend.Database._databases.get(os.getpid(), {}).get(DB_NAME)
    if pool is not None:
        pool.close()
    with Transaction().start(
            None, 0, close=True, autocommit=True) as transaction:
        cursor = transaction.connection.cursor()
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (DB_NAME,))


def scenario_test_case(module_globals, here):
    """A TestCase with a test_<scenario> method for each scenario_*.rst in
    `here`, each run as Tryton's load_doc_tests runs it."""
    flags = (doctest.REPORT_ONLY_FIRST_FAILURE | doctest.ELLIPSIS
        | doctest.IGNORE_EXCEPTION_DETAIL)
    if backend.name == 'sqlite':
        flags |= STRIP_DECIMAL

    def make(path):
        def test(self):
            suite = doctest.DocFileSuite(str(path), module_relative=False,
                setUp=doctest_setup, tearDown=doctest_teardown,
                encoding='utf-8', checker=doctest_checker,
                optionflags=flags)
            release_test_database()
            result = unittest.TestResult()
            suite.run(result)
            self.assertEqual(result.testsRun, 1)
            problems = result.failures + result.errors
            self.assertFalse(problems, '\n'.join(t for _, t in problems))
        test.__doc__ = f"Scenario {path.name}"
        return test

    methods = {f'test_{p.stem}': make(p)
        for p in sorted(here.glob('scenario_*.rst'))}

    @classmethod
    def setUpClass(cls):
        configure_pii_key()

    return type('ScenarioTestCase', (unittest.TestCase,),
        {'setUpClass': setUpClass, '__module__': module_globals['__name__'],
            '__doc__': "Scenario doctests", **methods})


ScenarioTestCase = scenario_test_case(globals(), HERE)
