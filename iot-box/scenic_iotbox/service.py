"""Wiring: configuration → store, devices, validator, sync loop, local API.

:func:`build_devices` is the one place that turns ``[drivers.*]`` into
device objects, through the ``scenic_iotbox.drivers`` registry
(``create(kind, driver, options)``; drivers register themselves there,
including the simulated ones); ``driver = "none"`` is no device.

Device interfaces the core relies on:
    turnstile   ``open_passages(channel, n)``: let n people through.
    biometric   ``enrol(image) -> template``, ``match(template, image)``
                (one matcher, used for the ``face`` and ``fingerprint``
                bindings, or a dict method -> matcher).
    camera      ``capture(gate_code, lane) -> bytes | None`` (optional).
    readers     (qr, rfid, idcard on the box itself) any object with
                ``start(on_read)``; ``on_read(gate, lane, medium, data,
                direction=None)`` decides and opens like ``POST /scan``.
    any device  optional ``status() -> {"kind", "name", "ok", "errors"}``
                and ``close()``.
"""

import logging
import threading
from dataclasses import dataclass, field

from . import drivers
from .api import ApiServer, BoxApp, RequestError
from .config import ConfigError
from .store import Store
from .site import SiteDesk
from .sync import ErpClient, SyncEngine
from .validator import Validator

__all__ = ['Service', 'Devices', 'build_devices', 'DeviceError']

logger = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """A configured device could not be started."""


@dataclass
class Devices:
    turnstile: object = None
    biometrics: dict = field(default_factory=dict)
    camera: object = None
    readers: list = field(default_factory=list)
    others: list = field(default_factory=list)
    # A desk box's (window, kiosk): read and print on the page's request.
    printer: object = None
    desk_idcard: object = None

    def all(self):
        seen, result = set(), []
        for device in [self.turnstile, self.camera, self.printer,
                self.desk_idcard, *self.readers,
                *self.biometrics.values(), *self.others]:
            if device is not None and id(device) not in seen:
                seen.add(id(device))
                result.append(device)
        return result

    def status(self):
        result = []
        for device in self.all():
            status = getattr(device, 'status', None)
            if status is None:
                result.append({'kind': type(device).__name__,
                    'name': getattr(device, 'name', ''), 'ok': True,
                    'errors': 0})
                continue
            try:
                result.append(status())
            except Exception as error:
                result.append({'kind': type(device).__name__,
                    'name': getattr(device, 'name', ''), 'ok': False,
                    'errors': 1, 'error': str(error)})
        return result

    def start(self, on_read):
        for reader in self.readers:
            start = getattr(reader, 'start', None)
            if start is not None:
                start(on_read)

    def close(self):
        for device in self.all():
            close = getattr(device, 'close', None) or getattr(
                device, 'stop', None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception('Closing %r failed', device)


def build_devices(config):
    """Devices for ``config.drivers`` (see the module docstring)."""
    devices = Devices()
    for kind in ('turnstile', 'qr', 'rfid', 'idcard', 'biometric',
            'camera', 'printer'):
        driver = config.driver(kind)
        if driver.driver == 'none':
            continue
        try:
            device = drivers.create(kind, driver.driver,
                dict(driver.options))
        except drivers.UnknownDriver as error:
            devices.close()
            raise ConfigError(f'drivers.{kind}.driver', str(error)) \
                from None
        except Exception as error:
            devices.close()
            raise DeviceError(f'drivers.{kind}: {driver.driver!r} could '
                f'not start: {type(error).__name__}: {error}') from error
        if device is None:
            continue
        if kind == 'turnstile':
            devices.turnstile = device
        elif kind == 'biometric':
            if isinstance(device, dict):
                devices.biometrics.update(device)
            elif driver.driver in ('face', 'fingerprint'):
                devices.biometrics[driver.driver] = device
            else:
                devices.biometrics.update(face=device, fingerprint=device)
        elif kind == 'camera':
            devices.camera = device
        elif kind == 'printer':
            devices.printer = device
        elif kind == 'idcard' and getattr(device, 'gate', None) is None:
            # No gate: the desk's reader, read when the page asks.
            devices.desk_idcard = device
        else:
            devices.readers.append(device)
    return devices


class Service:
    """The running box."""

    def __init__(self, config, devices=None, clock=None):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.devices = devices if devices is not None else \
            build_devices(config)
        self.store = Store(config.store_path)
        self.client = ErpClient(config.erp.url, config.erp.database,
            timeout=config.erp.timeout, credentials=self.store.credentials,
            ca_file=config.erp.ca_file)
        self.site = SiteDesk(self.store, clock=clock)
        self.sync = SyncEngine(self.store, self.client, name=config.name,
            sync_interval=config.sync_interval,
            heartbeat_interval=config.heartbeat_interval,
            max_backoff=config.max_backoff, devices=self.devices.status,
            clock=clock, enrolment_token=config.erp.enrolment_token,
            credentials_file=config.credentials_file, site=self.site)
        self.validator = Validator(self.store, config.data_dir,
            biometrics=self.devices.biometrics, camera=self.devices.camera,
            clock=clock, online=lambda: self.sync.online,
            on_scan=self.sync.kick, timezone_name=config.timezone)
        self.app = BoxApp(self.validator, self.store, config.gates,
            turnstile=self.devices.turnstile, sync=self.sync,
            devices=self.devices.status, photo_fetcher=self.client.fetch,
            name=config.name, data_dir=config.data_dir,
            api_token=config.api_token, staff_token=config.staff_token,
            allowed_origins=config.allowed_origins, site=self.site,
            printer=self.devices.printer, idcard=self.devices.desk_idcard)
        self.server = None
        self._stopped = threading.Event()

    def on_read(self, gate, lane, medium, data, direction=None):
        """A reader on the box read something: decide and open."""
        body = {'gate': gate, 'lane': lane, 'medium': medium, 'data': data}
        if direction:
            body['direction'] = direction
        try:
            return self.app.scan(body)[1]
        except RequestError as error:
            logger.warning('Reader input refused: %s', error.message)
            return error.body()

    def start(self, api=True, sync=True):
        if api:
            self.server = ApiServer(self.config.listen, self.app)
            self.server.start()
            logger.info('Local API on %s', self.server.url)
        if sync:
            self.sync.start()
        self.devices.start(self.on_read)

    def stop(self):
        if self._stopped.is_set():
            return
        self._stopped.set()
        logger.info('Stopping')
        if self.server is not None:
            self.server.stop()
        self.sync.stop()
        self.devices.close()
        self.store.close()
