"""The box's configuration file (``box.toml``), read with tomllib.

Every setting has a default except ``erp.url``, ``erp.database`` and at
least one ``[[gates]]`` entry; see box.example.toml.  Relative paths are
relative to the configuration file's directory.  A bad value raises
:class:`ConfigError` naming the key (``gates[1].code``, ``api.listen``…).
"""

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ['ConfigError', 'Config', 'ErpConfig', 'GateConfig',
    'DriverConfig', 'load', 'parse', 'DRIVER_KINDS']

DEFAULT_LISTEN = ('127.0.0.1', 8100)
MIN_TOKEN = 16
LOOPBACK_NAMES = ('localhost', 'localhost.localdomain')
DRIVER_KINDS = ('turnstile', 'qr', 'rfid', 'idcard', 'biometric', 'camera',
    'printer')
DEFAULT_DRIVERS = {'turnstile': 'none', 'qr': 'none', 'rfid': 'none',
    'idcard': 'none', 'biometric': 'none', 'camera': 'none',
    'printer': 'none'}


class ConfigError(ValueError):
    """A bad configuration; ``key`` is the dotted name of the setting."""

    def __init__(self, key, message):
        super().__init__(f'{key}: {message}' if key else message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class ErpConfig:
    url: str
    database: str
    enrolment_token: str | None = None
    timeout: float = 10.0
    ca_file: Path | None = None     # the pinned CA of an https ERP


@dataclass(frozen=True)
class GateConfig:
    """A gate this box serves, by its ERP code; ``turnstile_lanes[i]`` is
    the turnstile channel of the gate's lane i + 1 (default: lane = channel
    number)."""

    code: str
    turnstile_lanes: tuple = ()

    def channel(self, lane):
        if self.turnstile_lanes and 1 <= lane <= len(self.turnstile_lanes):
            return self.turnstile_lanes[lane - 1]
        return lane


@dataclass(frozen=True)
class DriverConfig:
    """``driver`` chooses the implementation; the other keys are its
    options, passed through to the driver unchanged."""

    kind: str
    driver: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    erp: ErpConfig
    gates: tuple
    name: str = 'scenic-iotbox'
    data_dir: Path = Path('.')
    credentials_file: Path | None = None
    timezone: str = 'Asia/Shanghai'
    sync_interval: float = 10.0
    heartbeat_interval: float = 60.0
    max_backoff: float = 300.0
    listen: tuple = DEFAULT_LISTEN
    api_token: str | None = None
    staff_token: str | None = None
    allowed_origins: tuple = ()
    drivers: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def store_path(self):
        return self.data_dir / 'box.sqlite'

    def gate(self, code):
        for gate in self.gates:
            if gate.code == code:
                return gate
        return None

    def driver(self, kind):
        return self.drivers.get(kind) or DriverConfig(
            kind, DEFAULT_DRIVERS.get(kind, 'none'))


def _table(data, key, required=False):
    value = data.get(key.rsplit('.', 1)[-1])
    if value is None:
        if required:
            raise ConfigError(key, 'is required (a [table]).')
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, 'must be a table.')
    return value


def _str(table, prefix, name, default=None, required=False):
    value = table.get(name, default)
    key = f'{prefix}.{name}'
    if value is None:
        if required:
            raise ConfigError(key, 'is required.')
        return None
    if not isinstance(value, str):
        raise ConfigError(key, 'must be a string.')
    value = value.strip()
    if required and not value:
        raise ConfigError(key, 'must not be empty.')
    return value


def _number(table, prefix, name, default, low=None, high=None):
    value = table.get(name, default)
    key = f'{prefix}.{name}'
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, 'must be a number.')
    if low is not None and value < low:
        raise ConfigError(key, f'must be at least {low}.')
    if high is not None and value > high:
        raise ConfigError(key, f'must be at most {high}.')
    return float(value)


def _listen(value):
    key = 'api.listen'
    if not isinstance(value, str) or ':' not in value:
        raise ConfigError(key, 'must be "host:port", e.g. "127.0.0.1:8100".')
    host, _, port = value.rpartition(':')
    host = host.strip('[]') or '127.0.0.1'
    try:
        port = int(port)
    except ValueError:
        raise ConfigError(key, f'port {port!r} is not a number.') from None
    if not 0 <= port <= 65535:
        raise ConfigError(key, 'port must be between 0 and 65535.')
    return host, port


def is_loopback(host):
    "Is host (a name or an address, maybe bracketed) this machine only?"
    host = (host or '').strip('[]').lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unknown(table, prefix, known):
    for name in table:
        if name not in known:
            raise ConfigError(f'{prefix}.{name}' if prefix else name,
                'unknown setting.')


def parse(data, base=Path('.'), path=None):
    """Build a Config from parsed TOML ``data``."""
    if not isinstance(data, dict):
        raise ConfigError('', 'The configuration must be a TOML document.')
    _unknown(data, '', {'erp', 'box', 'api', 'gates', 'drivers'})

    erp = _table(data, 'erp', required=True)
    _unknown(erp, 'erp', {'url', 'database', 'enrolment_token', 'timeout',
        'ca_file'})
    url = _str(erp, 'erp', 'url', required=True).rstrip('/')
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise ConfigError('erp.url',
            'must be an https URL such as "https://erp.example.com".')
    # the box's secret, ID hashes and signing keys travel on this line
    if parts.scheme == 'http' and not is_loopback(parts.hostname):
        raise ConfigError('erp.url', 'must be https:// (plain http only to '
            'an ERP on this machine, e.g. the demo\'s 127.0.0.1).')
    ca_file = _str(erp, 'erp', 'ca_file')
    if parts.scheme == 'https':
        if not ca_file:
            raise ConfigError('erp.ca_file', 'is required with an https '
                'ERP: the PEM file of the CA that signed its certificate '
                '(only that CA is trusted).')
        if not (base / ca_file).is_file():
            raise ConfigError('erp.ca_file', f'{base / ca_file} is not a '
                'file.')
    database = _str(erp, 'erp', 'database', required=True)
    if '/' in database:
        raise ConfigError('erp.database', 'must not contain "/".')
    erp_config = ErpConfig(url=url, database=database,
        enrolment_token=_str(erp, 'erp', 'enrolment_token') or None,
        timeout=_number(erp, 'erp', 'timeout', 10, low=0.1, high=600),
        ca_file=base / ca_file if ca_file else None)

    box = _table(data, 'box')
    _unknown(box, 'box', {'name', 'data_dir', 'credentials', 'timezone',
        'sync_interval', 'heartbeat_interval', 'max_backoff'})
    name = _str(box, 'box', 'name', 'scenic-iotbox') or 'scenic-iotbox'
    data_dir = base / (_str(box, 'box', 'data_dir', 'data') or 'data')
    credentials = _str(box, 'box', 'credentials')
    timezone_name = _str(box, 'box', 'timezone', 'Asia/Shanghai')
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError('box.timezone',
            f'unknown time zone {timezone_name!r}.') from None

    api = _table(data, 'api')
    _unknown(api, 'api', {'listen', 'token', 'staff_token',
        'allowed_origins'})
    listen = _listen(api.get('listen', '127.0.0.1:8100'))
    api_token = _str(api, 'api', 'token') or None
    staff_token = _str(api, 'api', 'staff_token') or None
    if not is_loopback(listen[0]):
        # handhelds on the LAN: an open API would open gates for anyone
        for key, token in (('api.token', api_token),
                ('api.staff_token', staff_token)):
            if key == 'api.token' and not token:
                raise ConfigError(key, 'is required when api.listen is not '
                    'a loopback address (handhelds send "Authorization: '
                    'Bearer <token>").')
            if token and len(token) < MIN_TOKEN:
                raise ConfigError(key, f'must be at least {MIN_TOKEN} '
                    'characters when api.listen is not a loopback address.')
    if staff_token and staff_token == api_token:
        raise ConfigError('api.staff_token', 'must differ from api.token: '
            'handhelds must not confirm bindings.')
    origins = api.get('allowed_origins', [])
    if not isinstance(origins, list) or not all(
            isinstance(o, str) and urlsplit(o).scheme in ('http', 'https')
            and urlsplit(o).netloc for o in origins):
        raise ConfigError('api.allowed_origins', 'must be a list of web '
            'origins such as "https://staff.example.com".')

    drivers = {}
    for kind, table in _table(data, 'drivers').items():
        prefix = f'drivers.{kind}'
        if kind not in DRIVER_KINDS:
            raise ConfigError(prefix, 'unknown device kind (one of '
                f'{", ".join(DRIVER_KINDS)}).')
        if not isinstance(table, dict):
            raise ConfigError(prefix, 'must be a table.')
        driver = _str(table, prefix, 'driver', DEFAULT_DRIVERS[kind])
        if not driver:
            raise ConfigError(f'{prefix}.driver', 'must not be empty.')
        options = {k: v for k, v in table.items() if k != 'driver'}
        drivers[kind] = DriverConfig(kind, driver, options)

    # A desk box (a ticket window's or a kiosk's PC: a printer, an ID
    # card reader without a gate) serves no gate.
    desk = drivers.get('printer', DriverConfig('printer', 'none')).driver \
        != 'none' or (drivers.get('idcard') is not None
            and drivers['idcard'].driver != 'none'
            and not drivers['idcard'].options.get('gate'))
    gates = data.get('gates', [] if desk else None)
    if not isinstance(gates, list) or not (gates or desk):
        raise ConfigError('gates', 'list at least one gate: [[gates]] '
            'code = "MAIN-IN" (a desk box: [drivers.printer] or '
            '[drivers.idcard] without a gate).')
    gate_configs = []
    for i, gate in enumerate(gates):
        prefix = f'gates[{i}]'
        if not isinstance(gate, dict):
            raise ConfigError(prefix, 'must be a table.')
        _unknown(gate, prefix, {'code', 'turnstile_lanes'})
        code = _str(gate, prefix, 'code', required=True)
        lanes = gate.get('turnstile_lanes', [])
        if not isinstance(lanes, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0
                for n in lanes):
            raise ConfigError(f'{prefix}.turnstile_lanes',
                'must be a list of channel numbers (>= 0).')
        if any(g.code == code for g in gate_configs):
            raise ConfigError(f'{prefix}.code', f'gate {code!r} is listed '
                'twice.')
        gate_configs.append(GateConfig(code, tuple(lanes)))

    return Config(
        erp=erp_config, gates=tuple(gate_configs), name=name,
        data_dir=data_dir,
        credentials_file=base / credentials if credentials else None,
        timezone=timezone_name,
        sync_interval=_number(box, 'box', 'sync_interval', 10, low=0.05,
            high=86400),
        heartbeat_interval=_number(box, 'box', 'heartbeat_interval', 60,
            low=0.05, high=86400),
        max_backoff=_number(box, 'box', 'max_backoff', 300, low=0.05,
            high=86400),
        listen=listen, api_token=api_token, staff_token=staff_token,
        allowed_origins=tuple(origins),
        drivers=drivers, path=path)


def load(path):
    """Read and check a box.toml."""
    path = Path(path)
    try:
        with open(path, 'rb') as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError('', f'Configuration file {path} not found.') \
            from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError('', f'{path} is not valid TOML: {error}') from None
    return parse(data, base=path.resolve().parent, path=path)
