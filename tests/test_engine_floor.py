"""bench/engine_floor.py runs end to end with tiny sizes and prints what
bench/README.md ("The floor, measured") reads. No timing is asserted: the
figures depend on the machine and its load."""
import json
import subprocess
import sys
from pathlib import Path

# Not `from conftest import ROOT`: tests/gate has a conftest of its own,
# and which one that name finds depends on what pytest collected first.
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = ROOT / 'bench' / 'engine_floor.py'


def run(*args, timeout=240):
    result = subprocess.run([sys.executable, str(SCRIPT), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_engine_floor_all_parts():
    lines = run('--clients', '4', '--seconds', '0.5', '--orders', '20')
    parts = [line.get('part') for line in lines]
    assert parts == ['python', 'python', 'http', 'pg', 'pg', 'pg',
        'round_trips', 'transactions', 'transactions', 'transactions',
        'transactions', None]
    python, threaded, http, durable, nondurable, rows, trips = lines[:7]
    framing, summary = lines[7:11], lines[11]
    # the Python part ran the engine's functions to a signed, paid answer
    assert python['orders'] == 20
    assert python['tickets_signed_per_order'] == 2
    assert (python['threads'], threaded['threads']) == (1, 4)
    assert threaded['orders'] == 20
    assert http['http'] == 'granian' and http['requests_per_s'] > 0
    # the PostgreSQL floor is measured durable, and labelled when not
    assert (durable['durable'], durable['synchronous_commit'],
        durable['fsync']) == (True, 'on', 'on')
    assert (nondurable['durable'], nondurable['synchronous_commit']) == (
        False, 'off')
    assert (durable['shape'], nondurable['shape']) == ('narrow', 'narrow')
    # the order's rows as the engine writes them, durable
    assert (rows['shape'], rows['durable']) == ('rows', True)
    for line in (durable, nondurable, rows):
        assert line['orders_per_s'] > 0
    for line in (python, threaded, http, durable, nondurable, rows):
        assert line['cpu_ms_per_order'] >= 0
        assert 'others_pct' in line and 'load_before' in line
    # the engine's round trips alone: reported beside, not in the floor
    assert (trips['threads'], trips['statements_per_order']) == (8, 4)
    assert trips['orders_per_s'] > 0
    assert summary['round_trips_ms_per_order'] == {
        'client': trips['client_cpu_ms_per_order'],
        'pg': trips['pg_cpu_ms_per_order']}
    # what a transaction's framing and the hold counter's cost
    assert [line['mode'] for line in framing] == ['statement',
        'begin_commit', 'pipelined', 'hold_counter']
    for line in framing:
        assert line['operations_per_s'] > 0 and line['threads'] == 8
        assert line['client_cpu_ms_per_operation'] >= 0
        assert line['pg_cpu_ms_per_operation'] >= 0
    by_mode = {line['mode']: line for line in framing}
    assert set(summary['transaction_framing_ms']) == {
        'begin_commit', 'pipelined', 'hold_counter'}
    assert summary['transaction_framing_ms']['hold_counter'] == round(
        by_mode['hold_counter']['client_cpu_ms_per_operation']
        + by_mode['hold_counter']['pg_cpu_ms_per_operation'], 3)
    assert summary['summary'] is True
    assert set(summary['floor_ms_per_order']) == {'python', 'http', 'pg'}
    assert summary['floor_ms_per_order']['pg'] == durable['cpu_ms_per_order']
    assert summary['floor_total_ms_per_order'] == round(
        sum(summary['floor_ms_per_order'].values()), 2)
    assert summary['floor_ms_per_order']['python'] == (
        python['cpu_ms_per_order'])
    assert summary['python_4_threads_ms_per_order'] == (
        threaded['cpu_ms_per_order'])
    assert summary['pg_order_rows_ms_per_order'] == rows['cpu_ms_per_order']
    assert summary['allowed_ms_per_order'] == round(
        1000 * summary['cores'] / 300, 2)


def test_engine_floor_refuses_bad_arguments():
    result = subprocess.run([sys.executable, str(SCRIPT), '--parts', 'disk'],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert '--parts takes' in result.stderr
