"""Shared fixtures of the cross-module tests (tests/).

- scripts/ is importable (pgcluster, demo).
- ``pg_uri``: a PostgreSQL server URI ('postgresql://user@host:port/'), from
  SCENIC_PG_URI (set by scripts/run_tests.py and pgcluster.py run) or else
  from a throwaway cluster started for the session.
- ``artifacts_dir``: test-artifacts/ at the repo root (screenshots...).
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / 'scripts'
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope='session')
def pg_uri():
    uri = os.environ.get('SCENIC_PG_URI')
    if uri:
        yield uri
        return
    import pgcluster
    try:
        cluster = pgcluster.Cluster().start()
    except pgcluster.PostgresNotFound as e:
        pytest.fail(f"no PostgreSQL for the tests: {e}", pytrace=False)
    try:
        yield cluster.uri
    finally:
        cluster.stop()


@pytest.fixture(scope='session')
def artifacts_dir():
    path = ROOT / 'test-artifacts'
    path.mkdir(exist_ok=True)
    return path
