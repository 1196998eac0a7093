#!/usr/bin/env python3
"""Run every Scenic test suite and print a summary; exit 1 if any failed.

    python scripts/run_tests.py                 # all parts
    python scripts/run_tests.py --only common,addons-sqlite -- -x -k slot

Parts:
  common             pytest common/tests (scenic_common, pure Python)
  iot-box            pytest iot-box/tests (the gate box and its drivers)
  addons-sqlite      pytest addons on SQLite (DB_CACHE=var/cache/sqlite/<hash
                     of addons/>)
  addons-postgresql  pytest addons on a throwaway PostgreSQL cluster
                     (DB_NAME=test_scenic, DB_CACHE=postgresql://: template
                     databases kept on that server)
  cross              pytest tests (harness, config, browser test); gets
                     SCENIC_PG_URI of the same cluster
  analytics          pytest analytics/tests (reporting layer on fixtures,
                     notebooks on a simulated history)

Arguments after `--` go to every pytest.  Each part has a time limit
(SCENIC_TEST_PART_TIMEOUT seconds, default 3600): a hung part is stopped
with room left in CI's 90 minutes, while a part slowed by a busy machine
(addons-postgresql took 1192 s and 1941 s on two runs of nearly the same
tests) is not cut off.

The parts run in two lanes at once (--serial: one after another): lane 1
common, addons-sqlite, cross; lane 2 iot-box, addons-postgresql,
analytics.  Each pytest is mostly one Python process, so two lanes use two
cores: the suite takes about its longest lane instead of the sum.  Each
lane that needs PostgreSQL has its own throwaway cluster.  A part's output
goes to var/test-reports/<part>.log and is printed whole when the part ends.
"""
import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
import pgcluster  # noqa: E402

VAR = ROOT / 'var'
REPORTS = VAR / 'test-reports'
PYTEST_NO_TESTS = 5
TIMEOUT = int(os.environ.get('SCENIC_TEST_PART_TIMEOUT', 3600))
# The running pytest processes, killed on Ctrl-C.
RUNNING = set()
PRINT_LOCK = threading.Lock()


@dataclass
class Part:
    name: str
    paths: list
    required: bool  # "no tests collected" is a failure
    lane: int  # parts of a lane run one after another, lanes at once
    postgresql: bool = False
    env: dict = field(default_factory=dict)
    # results
    status: str = 'not run'
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ''

    @property
    def ok(self):
        return self.status in {'ok', 'no tests'}


def addons_key():
    """Short hash of the modules' files and trytond's version.  trytond
    names its DB_CACHE dumps after the module names only, so a changed
    module would otherwise be tested on a stale cached schema."""
    from importlib.metadata import version
    digest = hashlib.sha256(version('trytond').encode())
    for path in sorted((ROOT / 'addons').rglob('*')):
        if (path.is_file() and '__pycache__' not in path.parts
                and not any(p.endswith('.egg-info') for p in path.parts)):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def sqlite_cache_dir():
    "var/cache/sqlite/<addons key>, dropping the caches of other keys."
    base = VAR / 'cache' / 'sqlite'
    key = addons_key()
    if base.exists():
        for old in base.iterdir():
            if old.name != key:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() \
                    else old.unlink()
    return base / key


def parts():
    return [
        # Lanes balanced by measured time. CI of 3dfe85b (2026-12-05):
        # lane 1 common 9 s + iot-box 79 s + addons-sqlite 1155 s + cross
        # 686 s = 1929 s, lane 2 addons-postgresql 1941 s + analytics 4 s.
        # The test-trim branch then took ~380 s of module installs off
        # addons-postgresql (cached databases reused: test_coverage and the
        # finance scenario, the group module test and the agency-month
        # scenario) and less off addons-sqlite (the same reuse, fewer
        # installs there), so iot-box (79 s) moved to lane 2.
        Part('common', ['common/tests'], required=True, lane=1),
        Part('iot-box', ['iot-box/tests'], required=True, lane=2),
        Part('addons-sqlite', ['addons'], required=True, lane=1,
            env={'DB_CACHE': str(sqlite_cache_dir())}),
        Part('addons-postgresql', ['addons'], required=True, lane=2,
            postgresql=True,
            env={'DB_NAME': 'test_scenic', 'DB_CACHE': 'postgresql://'}),
        Part('cross', ['tests'], required=False, lane=1, postgresql=True),
        Part('analytics', ['analytics/tests'], required=True, lane=2),
        ]


def base_env():
    "The environment of every part: no stray trytond or database setting."
    env = {k: v for k, v in os.environ.items()
        if not k.startswith(('TRYTOND_', 'DB_'))
        and k not in {'SCENIC_PG_URI', 'TRYTONPASSFILE'}}
    env['PYTHONUNBUFFERED'] = '1'
    return env


def read_counts(report):
    """Counts from pytest's JUnit XML report.  The <testcase> elements are
    counted, not the suite's totals: those include every subtest (trytond's
    ModuleTestCase runs thousands)."""
    counts = dict(tests=0, failures=0, errors=0, skipped=0)
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return counts
    for case in root.iter('testcase'):
        counts['tests'] += 1
        tags = {child.tag for child in case}
        if 'failure' in tags:
            counts['failures'] += 1
        elif 'error' in tags:
            counts['errors'] += 1
        elif 'skipped' in tags:
            counts['skipped'] += 1
    return counts


def run_part(part, pytest_args, pg_uri):
    report = REPORTS / f'{part.name}.xml'
    report.unlink(missing_ok=True)
    env = base_env()
    env.update(part.env)
    if part.postgresql:
        if pg_uri:
            env['SCENIC_PG_URI'] = pg_uri
            if part.paths == ['addons']:
                env['TRYTOND_DATABASE__URI'] = pg_uri
        elif part.required:
            part.status, part.note = 'FAILED', 'no PostgreSQL cluster'
            return
    if 'DB_CACHE' in env and not env['DB_CACHE'].startswith('postgresql'):
        os.makedirs(env['DB_CACHE'], exist_ok=True)
    cmd = [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider',
        f'--junitxml={report}', '-o', 'junit_family=xunit2',
        *part.paths, *pytest_args]
    log = REPORTS / f'{part.name}.log'
    say(f"run_tests: {part.name} started (output: {log.relative_to(ROOT)})")
    start = time.monotonic()
    # Own session, so that a timeout kills pytest and whatever it started.
    with open(log, 'wb') as output:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
            start_new_session=True, stdout=output,
            stderr=subprocess.STDOUT)
        RUNNING.add(proc)
        try:
            returncode = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode, part.note = -1, f'timed out after {TIMEOUT} s'
        finally:
            RUNNING.discard(proc)
    part.seconds = time.monotonic() - start
    say(f"\n===== {part.name}: {' '.join(cmd[1:])}\n"
        + log.read_text(errors='replace')
        + f"===== {part.name}: {part.seconds:.0f} s")
    part.counts = read_counts(report)
    if returncode == 0:
        part.status = 'ok'
    elif returncode == PYTEST_NO_TESTS:
        part.status = 'FAILED' if part.required else 'no tests'
        part.note = 'no tests collected'
    else:
        part.status = 'FAILED'
        part.note = part.note or f'pytest exit code {returncode}'


def say(text):
    "Print whole (lanes print at once)."
    with PRINT_LOCK:
        print(text, flush=True)


def run_lane(lane_parts, pytest_args):
    """The parts of a lane one after another, on the lane's own
    PostgreSQL cluster if one of them needs it."""
    with ExitStack() as stack:
        pg_uri = None
        if any(p.postgresql for p in lane_parts):
            try:
                pg_uri = stack.enter_context(pgcluster.throwaway_cluster())
                say(f"run_tests: PostgreSQL cluster at {pg_uri}")
            except (pgcluster.PostgresNotFound, RuntimeError,
                    subprocess.CalledProcessError) as e:
                say(f"run_tests: cannot start PostgreSQL: {e}")
        for part in lane_parts:
            run_part(part, pytest_args, pg_uri)


def summary(selected):
    print("\n===== summary")
    print(f"{'part':<19}{'result':<10}{'passed':>7}{'failed':>7}"
        f"{'skipped':>8}{'time':>9}  note")
    total = dict(passed=0, failed=0, skipped=0)
    for part in selected:
        c = part.counts
        failed = c.get('failures', 0) + c.get('errors', 0)
        passed = c.get('tests', 0) - failed - c.get('skipped', 0)
        total['passed'] += passed
        total['failed'] += failed
        total['skipped'] += c.get('skipped', 0)
        print(f"{part.name:<19}{part.status:<10}{passed:>7}{failed:>7}"
            f"{c.get('skipped', 0):>8}{part.seconds:>8.1f}s  {part.note}")
    print(f"total: {total['passed']} passed, {total['failed']} failed, "
        f"{total['skipped']} skipped", flush=True)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = []
    if '--' in argv:
        index = argv.index('--')
        argv, pytest_args = argv[:index], argv[index + 1:]
    all_parts = parts()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('--only', help="comma-separated parts: "
        + ', '.join(p.name for p in all_parts))
    parser.add_argument('--serial', action='store_true',
        help="run the parts one after another (one lane)")
    args = parser.parse_args(argv)
    selected = all_parts
    if args.only:
        names = args.only.split(',')
        unknown = set(names) - {p.name for p in all_parts}
        if unknown:
            parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
        selected = [p for p in all_parts if p.name in names]
    REPORTS.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    lanes = {}
    for part in selected:
        lanes.setdefault(0 if args.serial else part.lane, []).append(part)
    threads = [threading.Thread(target=run_lane, args=(lane, pytest_args),
            daemon=True) for lane in lanes.values()]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(1)
    except KeyboardInterrupt:
        for proc in list(RUNNING):
            os.killpg(proc.pid, signal.SIGINT)
        for thread in threads:
            thread.join(60)
        raise
    summary(selected)
    print(f"run_tests: {time.monotonic() - start:.0f} s in all")
    failed = [p.name for p in selected if not p.ok]
    if failed:
        print(f"run_tests: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
