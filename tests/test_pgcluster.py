"Tests of the throwaway PostgreSQL harness (scripts/pgcluster.py)."
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import pgcluster

SCRIPTS = Path(__file__).resolve().parent.parent / 'scripts'


def test_shared_uri_accepts_connections(pg_uri):
    assert pg_uri.startswith('postgresql://')
    with psycopg.connect(pg_uri + 'postgres') as conn:
        assert conn.execute('SELECT 1').fetchone() == (1,)


def test_cluster_is_fast_and_removed_afterwards():
    with pgcluster.Cluster() as cluster:
        tmpdir = cluster.tmpdir
        with psycopg.connect(cluster.uri + 'postgres') as conn:
            encoding, fsync = conn.execute(
                "SELECT pg_encoding_to_char(encoding), "
                "current_setting('fsync') FROM pg_database "
                "WHERE datname = 'postgres'").fetchone()
        assert (encoding, fsync) == ('UTF8', 'off')
        assert cluster.psql('SELECT 40 + 2').strip() == '42'
    assert not os.path.exists(tmpdir)


def test_cluster_removed_on_error():
    with pytest.raises(ZeroDivisionError):
        with pgcluster.Cluster() as cluster:
            tmpdir = cluster.tmpdir
            1 / 0
    assert not os.path.exists(tmpdir)


def test_cli_run_passes_uri_and_exit_code():
    code = ("import os, sys; "
        "assert os.environ['SCENIC_PG_URI'] == "
        "os.environ['TRYTOND_DATABASE__URI']; "
        "assert os.environ['SCENIC_PG_URI'].startswith('postgresql://'); "
        "sys.exit(7)")
    result = subprocess.run([sys.executable, SCRIPTS / 'pgcluster.py',
            'run', '--', sys.executable, '-c', code],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 7, result.stderr
