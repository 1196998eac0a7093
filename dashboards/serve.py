#!/usr/bin/env python3
"""Serve the dashboards: Live, Today and Revenue, behind a login.

    python dashboards/serve.py --db sqlite:////abs/demo.sqlite \\
        [--listen 127.0.0.1:5006] [--users var/dashboards/users.json]

Login: a configured password file (JSON {"login": "password"}, mode 0600),
checked by Panel's basic-auth provider: without a session cookie every page,
`/` included, shows the login form, never data. Only the users listed may
log in (the duty managers'); it is not Tryton's user table. The server listens
on loopback unless --listen names another address.
"""
import argparse
import json
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = ['live', 'today', 'revenue']


def write_users(path, users):
    "Write the password file (0600)."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(users, f)
    return path


def command(db, listen, users, company=None, poll=None):
    "(argv, env) of `panel serve` for the dashboards."
    host, port = listen.rsplit(':', 1)
    argv = [sys.executable, '-m', 'panel', 'serve',
        *[str(HERE / f'{p}.py') for p in PAGES],
        '--address', host, '--port', port,
        '--allow-websocket-origin', f'{host}:{port}',
        '--basic-auth', str(users),
        '--cookie-secret', secrets.token_urlsafe(32),
        '--index', 'live', '--num-procs', '1']
    env = dict(os.environ, SCENIC_DASHBOARD_DB=db)
    if company:
        env['SCENIC_DASHBOARD_COMPANY'] = str(company)
    if poll:
        env['SCENIC_DASHBOARD_POLL'] = str(poll)
    return argv, env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--db', required=True, help="database URL")
    parser.add_argument('--listen', default='127.0.0.1:5006')
    parser.add_argument('--users', default='var/dashboards/users.json',
        help="password file (JSON login: password)")
    parser.add_argument('--company', type=int)
    args = parser.parse_args(argv)
    if not Path(args.users).exists():
        password = secrets.token_urlsafe(9)
        write_users(args.users, {'duty': password})
        print(f"dashboards: created {args.users}: login duty / {password}")
    argv, env = command(args.db, args.listen, args.users, args.company)
    os.execve(argv[0], argv, env)


if __name__ == '__main__':
    sys.exit(main())


DEMO_LISTEN = '127.0.0.1:5006'
DEMO_USERS = {'supervisor': 'supervisor-demo'}  # the demo's supervisor


def demo_command(var_dir, dbname='demo', uri=None, listen=None):
    """(argv, env, login lines) of the dashboards as `make demo` runs them
    (SCENIC_DEMO_DASHBOARDS_LISTEN moves them)."""
    listen = listen or os.environ.get('SCENIC_DEMO_DASHBOARDS_LISTEN',
        DEMO_LISTEN)
    var_dir = Path(var_dir).resolve()
    users = write_users(var_dir / 'dashboards' / 'users.json', DEMO_USERS)
    if uri:
        db = uri.rstrip('/') + '/' + dbname
    else:
        db = f'sqlite:///{var_dir / "db" / f"{dbname}.sqlite"}'
    argv, env = command(db, listen, users)
    return argv, env, listen
