"""A desk box (a ticket window's or a kiosk's PC): the ID card reader and
the ticket printer through the local API (GET /idcard, POST /print), the
browser's preflight from the ERP's page, and the printer's health in the
heartbeat."""
import http.client
import json

import pytest

from scenic_iotbox.api import ApiServer, BoxApp
from scenic_iotbox.config import ConfigError, parse
from scenic_iotbox.drivers.idcard import (
    IDCardData, IDCardPoller, SimulatedIDCardReader)
from scenic_iotbox.drivers.printer import TicketPrinter
from scenic_iotbox.sync import heartbeat_devices
from scenic_common.idnumber import make_resident_id
import datetime as dt

TOKEN = 'desk-token-0123456789'
PAGE = 'http://127.0.0.1:8000'
NUMBER = make_resident_id('330106', dt.date(1990, 5, 17), 123)
JOB = {'kind': 'ticket', 'title': 'Scenic', 'lines': ['Adult', '¥100.00'],
    'code': 'SC1:test-code'}


@pytest.fixture
def desk(validator, synced_store, tmp_path):
    reader = SimulatedIDCardReader()
    printer = TicketPrinter.memory(name='desk')
    app = BoxApp(validator, synced_store, [], api_token=TOKEN,
        allowed_origins=[PAGE], printer=printer,
        idcard=IDCardPoller(reader, name='desk-reader'),
        devices=lambda: [printer.status()])
    server = ApiServer(('127.0.0.1', 0), app)
    server.start()
    yield server, reader, printer
    server.stop()


def request(server, method, path, body=None, token=TOKEN, origin=PAGE):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {}
    if token:
        headers['Authorization'] = f'Bearer {token}'
    if origin:
        headers['Origin'] = origin
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers['Content-Type'] = 'application/json'
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    content = response.read()
    conn.close()
    return response, (json.loads(content) if content else None)


def test_idcard_read_by_the_page(desk):
    server, reader, _ = desk
    response, body = request(server, 'GET', '/idcard', token=None)
    assert response.status == 401
    response, body = request(server, 'GET', '/idcard',
        origin='http://evil.example')
    assert response.status == 403
    assert response.getheader('Access-Control-Allow-Origin') is None
    response, body = request(server, 'GET', '/idcard')
    assert (response.status, body) == (200, {'card': None})
    assert response.getheader('Access-Control-Allow-Origin') == PAGE
    reader.place(IDCardData('张三', NUMBER))
    response, body = request(server, 'GET', '/idcard')
    assert body == {'card': {'name': '张三', 'id_number': NUMBER}}
    reader.take()
    reader.place(IDCardData('李四', '110105196001010000'))  # bad checksum
    response, body = request(server, 'GET', '/idcard')
    assert body == {'card': None}


def test_preflight_only_for_allowed_origins(desk):
    server, _, _ = desk
    response, _ = request(server, 'OPTIONS', '/print', token=None)
    assert response.status == 204
    assert response.getheader('Access-Control-Allow-Origin') == PAGE
    assert 'Authorization' in response.getheader(
        'Access-Control-Allow-Headers')
    response, _ = request(server, 'OPTIONS', '/print', token=None,
        origin='http://evil.example')
    assert response.status == 403
    response, _ = request(server, 'OPTIONS', '/print', token=None,
        origin=None)
    assert response.status == 403


def test_print_and_paper_health(desk):
    server, _, printer = desk
    response, body = request(server, 'POST', '/print', {'jobs': [JOB, JOB]})
    assert (response.status, body) == (200, {'printed': 2})
    assert len(printer.jobs) == 2
    response, body = request(server, 'POST', '/print', {'jobs': []})
    assert (response.status, body['error']['field']) == (422, 'jobs')
    printer.paper = 'out'
    response, body = request(server, 'POST', '/print', {'jobs': [JOB]})
    assert response.status == 409
    assert body['printed'] == 0
    assert body['error']['code'] == 'printer_error'
    device, = heartbeat_devices([printer.status()])
    assert device == {'kind': 'printer', 'name': 'desk', 'ok': False,
        'errors': 1, 'paper': 'out',
        'last_error': 'The printer is out of paper.'}


def test_desk_box_needs_no_gate(tmp_path):
    base = {'erp': {'url': 'http://127.0.0.1:8000', 'database': 'demo'}}
    with pytest.raises(ConfigError) as error:
        parse(dict(base), tmp_path)
    assert error.value.key == 'gates'
    config = parse(dict(base, drivers={'printer': {'driver': 'memory'},
                'idcard': {'driver': 'sim'}}), tmp_path)
    assert config.gates == ()
    with pytest.raises(ConfigError):    # a gate's reader: gates needed
        parse(dict(base, drivers={'idcard': {'driver': 'sim',
                        'gate': 'MAIN-IN'}}), tmp_path)


def test_simulated_reader_card_file(tmp_path):
    "The demo places a card on a running box's reader by writing a file"
    path = tmp_path / 'idcard.json'
    poller = IDCardPoller.simulated(card_file=str(path), name='kiosk')
    assert poller.reader.read() is None
    path.write_text(json.dumps({'name': '张三', 'id_number': NUMBER}),
        encoding='utf-8')
    assert poller.reader.read() == IDCardData('张三', NUMBER)
    path.write_text('{"name": "张三"', encoding='utf-8')   # half written
    assert poller.reader.read() is None
    assert poller.reader.counters['read_errors'] == 1
    path.unlink()
    assert poller.reader.read() is None
