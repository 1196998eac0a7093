"""The kiosk's desk box, as `make demo` runs it (the ``demo_kiosk_box``
fixture): the kiosk page's origin reads the simulated ID card placed with
`demo.py --place-card` and prints a ticket through it, other origins and
callers without the token get nothing, and the box heartbeats into the
device registry with its reader and printer."""
import http.client
import json
from urllib.parse import urlsplit

import demo
from back_office import back_office
from demo_box import until
from proteus import Model

JOB = {'kind': 'ticket', 'title': 'Cloud Mountain', 'lines': ['Adult'],
    'code': 'SC1:demo-kiosk-box-test'}


def call(box, method, path, body=None, origin=None,
        token=demo.DEMO_KIOSK_BOX_TOKEN):
    parts = urlsplit(box.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port,
        timeout=30)
    headers = {}
    if token:
        headers['Authorization'] = f'Bearer {token}'
    if origin:
        headers['Origin'] = origin
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers['Content-Type'] = 'application/json'
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
    finally:
        conn.close()
    return response, (json.loads(content) if content else None)


def test_demo_kiosk_box_reads_the_card_and_prints(demo_server,
        demo_kiosk_box):
    box, page = demo_kiosk_box, demo_server.url
    answer, _ = call(box, 'GET', '/idcard', origin=page, token=None)
    assert answer.status == 401
    answer, _ = call(box, 'GET', '/idcard', origin='http://evil.example')
    assert answer.status == 403
    answer, _ = call(box, 'OPTIONS', '/idcard', origin=page, token=None)
    assert answer.status == 204
    assert answer.getheader('Access-Control-Allow-Origin') == page

    demo.take_card(box.directory)
    answer, body = call(box, 'GET', '/idcard', origin=page)
    assert (answer.status, body) == (200, {'card': None})
    assert answer.getheader('Access-Control-Allow-Origin') == page
    # what `python scripts/demo.py --place-card` does
    assert demo.main(['--var-dir', str(demo_server.var_dir),
            '-d', demo_server.database, '--place-card']) == 0
    try:
        answer, body = call(box, 'GET', '/idcard', origin=page)
        name, number = demo.DEMO_ID_CARD
        assert body == {'card': {'name': name, 'id_number': number}}
    finally:
        assert demo.main(['--var-dir', str(demo_server.var_dir),
                '-d', demo_server.database, '--take-card']) == 0
    assert call(box, 'GET', '/idcard', origin=page)[1] == {'card': None}

    before = set((box.directory / 'prints').glob('ticket-*.png'))
    answer, body = call(box, 'POST', '/print', {'jobs': [JOB]}, origin=page)
    assert (answer.status, body) == (200, {'printed': 1})
    assert len(set((box.directory / 'prints').glob('ticket-*.png'))
        - before) == 1

    office = back_office(demo_server.url, demo_server.database, 'gate',
        'gate-demo')
    Box = Model.get('scenic.gate.box', config=office)
    kiosk, = Box.find([('name', '=', 'Kiosk 1 box')])

    def devices():
        record = Box(kiosk.id)
        return record.online and {(d.kind, d.name): d
            for d in record.devices}
    seen = until(lambda: (d := devices()) and ('printer',
            'kiosk-1-printer') in d and d)
    assert seen, devices()
    printer = seen[('printer', 'kiosk-1-printer')]
    assert (printer.paper, printer.ok) == ('ok', True)
    assert ('id_reader', 'kiosk-1-reader') in seen     # protocol's kind
    record = Box(kiosk.id)
    assert (record.state, record.gates, record.alarm) == (
        'enrolled', [], None)
