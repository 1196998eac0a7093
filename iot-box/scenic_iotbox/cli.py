"""``scenic-iotbox``: run the box, enrol it, show its status.

    scenic-iotbox run    --config box.toml
    scenic-iotbox enrol  --config box.toml --token T
    scenic-iotbox status --config box.toml [--json]
    scenic-iotbox sync   --config box.toml      (one round now)

The configuration defaults to $SCENIC_IOTBOX_CONFIG, else ./box.toml.
Exit codes: 0 ok, 1 the ERP or a device failed, 2 bad configuration.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
import urllib.request

from . import __version__
from .config import ConfigError, load
from .service import DeviceError

logger = logging.getLogger('scenic_iotbox')


class ListenError(RuntimeError):
    """The local API's address cannot be bound."""


def _config(args):
    return load(args.config)


def cmd_run(args):
    from .service import Service
    config = _config(args)
    service = Service(config)
    stop = threading.Event()

    def handler(signum, frame):
        logger.info('Signal %s received', signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        try:
            service.start()
        except OSError as error:
            host, port = config.listen
            raise ListenError(f'cannot listen on {host}:{port} '
                f'({error.strerror or error}): another program holds it? '
                'Set api.listen.') from None
        print(f'scenic-iotbox {__version__}: serving gates '
            f'{", ".join(g.code for g in config.gates)} on '
            f'http://{config.listen[0]}:{service.server.server_address[1]}',
            flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
    return 0


def cmd_enrol(args):
    from .store import Store
    from .sync import ErpClient, ErpError, SyncEngine
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(config.store_path)
    try:
        client = ErpClient(config.erp.url, config.erp.database,
            timeout=config.erp.timeout, credentials=store.credentials,
            ca_file=config.erp.ca_file)
        engine = SyncEngine(store, client, name=config.name)
        try:
            answer = engine.enrol(args.token)
        except ErpError as error:
            print(f'Enrolment failed: {error}', file=sys.stderr)
            return 1
        print(f'Enrolled as box {answer["box"]} of area '
            f'{answer.get("area")}.')
        if not args.no_sync:
            try:
                engine.sync()
                print('First sync done.')
            except ErpError as error:
                print(f'First sync failed (the box retries when it '
                    f'runs): {error}', file=sys.stderr)
    finally:
        store.close()
    return 0


def _status_from_api(config):
    host, port = config.listen
    if host in ('0.0.0.0', '::', ''):
        host = '127.0.0.1'
    request = urllib.request.Request(f'http://{host}:{port}/status')
    if config.api_token:
        request.add_header('Authorization', f'Bearer {config.api_token}')
    with urllib.request.urlopen(request, timeout=2) as response:
        status = json.loads(response.read())
    status['running'] = True
    return status


def _status_from_store(config):
    from .store import Store
    if not config.store_path.exists():
        return {'running': False, 'enrolled': False, 'box': None,
            'outbox': 0, 'last_sync': None}
    store = Store(config.store_path)
    try:
        credentials = store.credentials()
        counts = store.counts()
        return {'running': False, 'name': config.name,
            'box': credentials['box'] if credentials else None,
            'enrolled': credentials is not None,
            'revoked': bool(store.get_meta('revoked')),
            'area': store.get_meta('area_id'),
            'last_sync': store.get_meta('last_sync_at'),
            'outbox': counts['outbox_pending'],
            'conflicts': counts['conflicts'], 'counts': counts}
    finally:
        store.close()


def cmd_status(args):
    config = _config(args)
    try:
        status = _status_from_api(config)
    except Exception:
        status = _status_from_store(config)
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    print(f'box:        {status.get("box") or "not enrolled"}'
        + (' (REVOKED)' if status.get('revoked') else ''))
    print(f'running:    {"yes" if status.get("running") else "no"}')
    if status.get('running'):
        print(f'online:     {"yes" if status.get("online") else "no"}')
        if status.get('last_error'):
            print(f'last error: {status["last_error"]}')
    print(f'last sync:  {status.get("last_sync") or "never"}')
    if status.get('sync_lag_s') is not None:
        print(f'sync lag:   {status["sync_lag_s"]:.0f} s')
    print(f'outbox:     {status.get("outbox", 0)} scan(s) to upload')
    if status.get('conflicts'):
        print(f'conflicts:  {status["conflicts"]}')
    for device in status.get('devices') or []:
        print(f'device:     {device.get("kind")} {device.get("name", "")} '
            f'{"ok" if device.get("ok") else "FAILING"}')
    for gate in status.get('gates') or []:
        print(f'gate:       {gate["code"]} '
            f'{"synced" if gate.get("synced") else "not synced"}')
    return 0


def cmd_sync(args):
    from .store import Store
    from .sync import ErpClient, ErpError, SyncEngine
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(config.store_path)
    try:
        client = ErpClient(config.erp.url, config.erp.database,
            timeout=config.erp.timeout, credentials=store.credentials,
            ca_file=config.erp.ca_file)
        engine = SyncEngine(store, client, name=config.name,
            enrolment_token=config.erp.enrolment_token,
            credentials_file=config.credentials_file)
        try:
            engine.run_once()
        except ErpError as error:
            print(f'Sync failed: {error}', file=sys.stderr)
            return 1
        print(f'Synced; {store.outbox_size()} scan(s) left to upload.')
    finally:
        store.close()
    return 0


def parser():
    default = os.environ.get('SCENIC_IOTBOX_CONFIG', 'box.toml')
    main = argparse.ArgumentParser(prog='scenic-iotbox',
        description='Scenic gate box: offline validation, turnstiles, '
        'sync with the ERP.')
    main.add_argument('--version', action='version',
        version=f'scenic-iotbox {__version__}')
    main.add_argument('--log-level', default=os.environ.get(
        'SCENIC_IOTBOX_LOG', 'INFO'))
    commands = main.add_subparsers(dest='command', required=True)
    run = commands.add_parser('run', help='serve the gates')
    enrol = commands.add_parser('enrol', help='enrol with a one-time token')
    enrol.add_argument('--token', required=True)
    enrol.add_argument('--no-sync', action='store_true',
        help='do not sync right after enrolment')
    status = commands.add_parser('status', help='show the box status')
    status.add_argument('--json', action='store_true')
    sync = commands.add_parser('sync', help='upload scans and sync now')
    for sub in (run, enrol, status, sync):
        sub.add_argument('--config', '-c', default=default,
            help=f'box.toml (default: {default})')
    run.set_defaults(func=cmd_run)
    enrol.set_defaults(func=cmd_enrol)
    status.set_defaults(func=cmd_status)
    sync.set_defaults(func=cmd_sync)
    return main


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(),
        logging.INFO), format='%(asctime)s %(levelname)s %(name)s: '
        '%(message)s')
    try:
        return args.func(args)
    except ConfigError as error:
        print(f'Configuration error: {error}', file=sys.stderr)
        return 2
    except DeviceError as error:
        print(f'Device error: {error}', file=sys.stderr)
        return 1
    except ListenError as error:
        print(f'Local API: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
