"""box.toml: the example loads; bad settings name their key."""
from pathlib import Path

import pytest

from scenic_iotbox.config import ConfigError, load, parse

EXAMPLE = Path(__file__).resolve().parent.parent / 'box.example.toml'


def test_example_loads():
    config = load(EXAMPLE)
    assert config.erp.url == 'http://127.0.0.1:8000'
    assert config.erp.database == 'demo'
    assert [g.code for g in config.gates] == ['MAIN-IN', 'MAIN-OUT']
    assert config.gate('MAIN-OUT').channel(2) == 4
    assert config.gate('MAIN-IN').channel(7) == 7     # beyond the map
    assert config.listen == ('127.0.0.1', 8100)
    assert config.driver('turnstile').driver == 'sim'
    assert config.driver('rfid').driver == 'none'
    assert config.data_dir == EXAMPLE.parent / 'var/iotbox'
    assert config.store_path.name == 'box.sqlite'
    assert config.sync_interval == 10 and config.heartbeat_interval == 60


def minimal(**changes):
    data = {'erp': {'url': 'http://127.0.0.1:8000', 'database': 'demo'},
        'gates': [{'code': 'MAIN-IN'}]}
    for key, value in changes.items():
        section, _, name = key.partition('__')
        if name:
            data.setdefault(section, {})[name] = value
        else:
            data[section] = value
    return data


def test_defaults():
    config = parse(minimal(), base=Path('/srv/box'))
    assert config.listen == ('127.0.0.1', 8100)
    assert config.data_dir == Path('/srv/box/data')
    assert config.driver('turnstile').driver == 'none'
    assert config.api_token is None and config.credentials_file is None


def test_driver_options_pass_through():
    config = parse(minimal(drivers={'turnstile': {'driver': 'serial',
        'port': '/dev/ttyUSB0', 'baudrate': 9600}}))
    driver = config.driver('turnstile')
    assert driver.driver == 'serial'
    assert driver.options == {'port': '/dev/ttyUSB0', 'baudrate': 9600}


@pytest.mark.parametrize('data,key', [
    ({}, 'erp'),
    (minimal(erp={'database': 'demo'}), 'erp.url'),
    (minimal(erp__url='ftp://x'), 'erp.url'),
    (minimal(erp__url=5), 'erp.url'),
    (minimal(erp={'url': 'http://127.0.0.1'}), 'erp.database'),
    (minimal(erp__database='a/b'), 'erp.database'),
    (minimal(erp__timeout='ten'), 'erp.timeout'),
    (minimal(erp__timeout=0), 'erp.timeout'),
    (minimal(erp__colour='blue'), 'erp.colour'),
    (minimal(gates=[]), 'gates'),
    (minimal(gates='MAIN-IN'), 'gates'),
    (minimal(gates=[{'code': ''}]), 'gates[0].code'),
    (minimal(gates=[{'code': 'A'}, {'code': 'A'}]), 'gates[1].code'),
    (minimal(gates=[{'code': 'A', 'turnstile_lanes': ['1']}]),
        'gates[0].turnstile_lanes'),
    (minimal(api__listen='8100'), 'api.listen'),
    (minimal(api__listen='127.0.0.1:http'), 'api.listen'),
    (minimal(api__listen='127.0.0.1:70000'), 'api.listen'),
    (minimal(box__sync_interval=-1), 'box.sync_interval'),
    (minimal(box__sync_interval=True), 'box.sync_interval'),
    (minimal(box__timezone='Mars/Olympus'), 'box.timezone'),
    (minimal(drivers={'scale': {'driver': 'x'}}), 'drivers.scale'),
    (minimal(drivers={'turnstile': 'sim'}), 'drivers.turnstile'),
    (minimal(drivers={'turnstile': {'driver': ''}}),
        'drivers.turnstile.driver'),
    (minimal(extra={}), 'extra'),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.key == key
    assert key in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        load(tmp_path / 'missing.toml')
    bad = tmp_path / 'bad.toml'
    bad.write_text('[erp\nurl = ')
    with pytest.raises(ConfigError, match='not valid TOML'):
        load(bad)


def test_token_required_beyond_loopback():
    "A box on the LAN without a token would open gates for anyone."
    for listen in ('0.0.0.0:8100', '192.168.1.20:8100', '[::]:8100'):
        with pytest.raises(ConfigError) as info:
            parse(minimal(api={'listen': listen}))
        assert info.value.key == 'api.token'
    with pytest.raises(ConfigError) as info:
        parse(minimal(api={'listen': '0.0.0.0:8100', 'token': 'short'}))
    assert info.value.key == 'api.token'
    with pytest.raises(ConfigError) as info:
        parse(minimal(api={'listen': '0.0.0.0:8100', 'token': 'x' * 20,
            'staff_token': 'x' * 20}))
    assert info.value.key == 'api.staff_token'
    config = parse(minimal(api={'listen': '0.0.0.0:8100', 'token': 'h' * 20,
        'staff_token': 's' * 20,
        'allowed_origins': ['https://staff.example']}))
    assert config.api_token == 'h' * 20 and config.staff_token == 's' * 20
    assert config.allowed_origins == ('https://staff.example',)
    for listen in ('127.0.0.1:8100', 'localhost:8100', '[::1]:8100'):
        assert parse(minimal(api={'listen': listen})).api_token is None
    with pytest.raises(ConfigError) as info:
        parse(minimal(api={'allowed_origins': ['*']}))
    assert info.value.key == 'api.allowed_origins'
