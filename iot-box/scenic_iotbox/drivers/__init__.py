"""Device drivers, each behind a small interface chosen by configuration.

``create(kind, name, options)`` builds the driver that ``[drivers.<kind>]``
names in box.toml; the other keys of that table are its options (keyword
arguments of the class).  The registry holds dotted paths, not classes, so
that importing this package pulls in neither dlib nor pyscard: a box
without a face matcher never loads one.

See DRIVERS.md for every kind, name and option.
"""

from importlib import import_module

__all__ = ['create', 'available', 'register', 'UnknownDriver',
    'DriverUnavailable']


class UnknownDriver(LookupError):
    """No driver of that kind and name (a configuration error)."""


class DriverUnavailable(RuntimeError):
    """The driver exists as an interface only (vendor SDK not present)."""


# (kind, name) -> "module:factory", relative to this package.
_REGISTRY = {
    ('turnstile', 'serial'): 'turnstile:TurnstileController',
    ('turnstile', 'sim'): 'turnstile_sim:simulated_turnstile',
    ('qr', 'camera'): 'qr:CameraQRReader.from_options',
    ('qr', 'wedge'): 'qr:WedgeQRReader.from_options',
    ('qr_decoder', 'zxing'): 'qr:ZxingDecoder',
    ('qr_decoder', 'pyzbar'): 'qr:PyzbarDecoder',
    ('camera', 'images'): 'qr:ImageSource.from_options',
    ('rfid', 'pcsc'): 'rfid:RfidReader.pcsc',
    ('idcard', 'sim'): 'idcard:IDCardPoller.simulated',
    ('printer', 'file'): 'printer:TicketPrinter.file',
    ('printer', 'memory'): 'printer:TicketPrinter.memory',
    ('biometric', 'face'): 'biometric:FaceMatcher',
    ('biometric', 'fingerprint'): 'biometric:fingerprint_matcher',
}


def register(kind, name, target):
    """Add a driver: ``target`` is a callable or ``"package.module:attr"``.

    A vendor driver shipped in its own package registers itself here."""
    _REGISTRY[(kind, name)] = target


def available(kind=None):
    """Registered ``(kind, name)`` pairs (of one kind if given)."""
    return sorted(key for key in _REGISTRY if kind is None or key[0] == kind)


def _resolve(target):
    if callable(target):
        return target
    module_name, _, attr = target.partition(':')
    if '.' not in module_name or module_name.startswith('.'):
        module = import_module('.' + module_name.lstrip('.'), __name__)
    else:
        module = import_module(module_name)
    obj = module
    for part in attr.split('.'):
        obj = getattr(obj, part)
    return obj


def create(kind, name, options=None, /, **kwargs):
    """Build the driver ``name`` of ``kind`` with its options.

    Options come as a dict (``create('rfid', 'pcsc', {'reader': 'ACS'})``,
    how the box passes box.toml tables) or as keywords."""
    target = _REGISTRY.get((kind, name))
    if target is None:
        names = ', '.join(n for k, n in available(kind)) or 'none'
        raise UnknownDriver(f'No {kind} driver named {name!r} '
            f'(available: {names}).')
    merged = dict(options or {})
    merged.update(kwargs)
    return _resolve(target)(**merged)
