"""The driver registry: names from box.toml to driver objects."""
import pytest

from scenic_iotbox import drivers
from scenic_iotbox.drivers import (UnknownDriver, available, create,
    register)
from scenic_iotbox.drivers.qr import ZxingDecoder


def test_every_registered_driver_resolves():
    for kind, name in available():
        target = drivers._REGISTRY[(kind, name)]
        assert callable(drivers._resolve(target)), (kind, name)


def test_options_as_dict_or_keywords():
    decoder = create('qr_decoder', 'zxing', {'formats': ['QRCode']},
        name='lane-1')
    assert isinstance(decoder, ZxingDecoder) and decoder.name == 'lane-1'


def test_unknown_names_are_a_clear_error():
    with pytest.raises(UnknownDriver, match='available: sim'):
        create('idcard', 'acme')
    with pytest.raises(UnknownDriver):
        create('scale', 'any')


def test_importing_the_package_loads_no_heavy_library():
    import subprocess
    import sys
    code = ('import sys, scenic_iotbox.drivers; '
        'print(sorted(m for m in ("dlib", "face_recognition", "smartcard",'
        ' "pyzbar", "zxingcpp", "serial") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
        text=True, check=True).stdout
    assert out.strip() == '[]'


def test_vendor_drivers_register(monkeypatch):
    monkeypatch.setattr(drivers, '_REGISTRY', dict(drivers._REGISTRY))

    class VendorReader:
        def __init__(self, library='/opt/vendor/libsdtapi.so', port=1001):
            self.library, self.port = library, port
    register('idcard', 'vendor', VendorReader)
    reader = create('idcard', 'vendor', {'port': 1002})
    assert (reader.library, reader.port) == ('/opt/vendor/libsdtapi.so',
        1002)
    assert ('idcard', 'vendor') in available('idcard')
