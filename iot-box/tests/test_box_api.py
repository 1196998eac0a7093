"""The local HTTP API: /scan, /status, /photos; malformed input never opens."""
import base64
import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from box_fakes import FakeTurnstile, sign
from scenic_iotbox.api import ApiServer, BoxApp
from scenic_iotbox.config import GateConfig


class Client:

    def __init__(self, server, token=None):
        self.host, self.port = server.server_address[:2]
        self.token = token

    def request(self, method, path, body=None, raw=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = dict(headers or {})
        if self.token:
            headers['Authorization'] = f'Bearer {self.token}'
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers.setdefault('Content-Type', 'application/json')
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
        conn.close()
        kind = response.getheader('Content-Type') or ''
        if kind.startswith('application/json'):
            return response.status, json.loads(content)
        return response.status, content

    def scan(self, body):
        return self.request('POST', '/scan', raw=json.dumps(body).encode())


GATES = (GateConfig('MAIN-IN', (1, 2, 5, 6)), GateConfig('MAIN-OUT', (3, 4)))


@pytest.fixture
def turnstile():
    return FakeTurnstile()


@pytest.fixture
def app(validator, synced_store, turnstile, tmp_path):
    return BoxApp(validator, synced_store, GATES, turnstile=turnstile,
        name='test-box', data_dir=tmp_path,
        photo_fetcher=lambda url: b'\xff\xd8\xff-card-photo',
        devices=lambda: [turnstile.status()])


@pytest.fixture
def server(app):
    server = ApiServer(('127.0.0.1', 0), app)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server):
    return Client(server)


def test_scan_group_opens_turnstile_n_times(client, turnstile):
    status, body = client.scan({'gate': 'MAIN-IN', 'lane': 2,
        'medium': 'qr', 'data': sign(9001, type_id=6, persons=10)})
    assert status == 200
    assert body['decision'] == 'open' and body['reason'] == 'ok'
    assert body['persons'] == 10
    assert body['ticket']['id'] == 9001
    assert body['ticket']['ticket_type_code'] == 'GROUP10'
    assert body['turnstile'] == {'ok': True, 'channel': 2, 'passages': 10}
    assert turnstile.opened == [(2, 10)]
    # already used: denied, the turnstile is not touched
    status, body = client.scan({'gate': 'MAIN-IN', 'lane': 1,
        'medium': 'qr', 'data': sign(9001, type_id=6, persons=10)})
    assert body['decision'] == 'deny' and body['reason'] == 'already_used'
    assert 'turnstile' not in body
    assert turnstile.opened == [(2, 10)]


def test_scan_exit_lane_mapping(client, turnstile):
    client.scan({'gate': 'MAIN-IN', 'lane': 1, 'medium': 'rfid',
        'data': '04A1B2C3D4'})
    status, body = client.scan({'gate': 'MAIN-OUT', 'lane': 2,
        'medium': 'rfid', 'data': '04A1B2C3D4', 'direction': 'out'})
    assert body['decision'] == 'open', body
    assert turnstile.opened == [(1, 1), (4, 1)]
    assert turnstile.directions == ['in', 'out']
    assert body['bound_photo_url'].startswith('/photos/card-9-')


def test_turnstile_without_direction(validator, synced_store, tmp_path):
    class TwoArguments:
        def __init__(self):
            self.opened = []

        def open_passages(self, lane, n):
            self.opened.append((lane, n))

    turnstile = TwoArguments()
    app = BoxApp(validator, synced_store, GATES, turnstile=turnstile)
    status, body = app.scan({'gate': 'MAIN-OUT', 'lane': 1, 'medium': 'qr',
        'data': sign(9004, type_id=6, persons=10), 'direction': 'out'})
    assert body['decision'] == 'deny'          # passback: never entered
    app.scan({'gate': 'MAIN-IN', 'lane': 1, 'medium': 'qr',
        'data': sign(9004, type_id=6, persons=10)})
    status, body = app.scan({'gate': 'MAIN-OUT', 'lane': 1, 'medium': 'qr',
        'data': sign(9004, type_id=6, persons=10)})
    assert body['decision'] == 'open' and body['direction'] == 'out'
    assert turnstile.opened == [(1, 10), (3, 10)]


def test_gate_by_id(client, turnstile):
    status, body = client.scan({'gate': 7, 'lane': 1, 'medium': 'qr',
        'data': sign(9002)})
    assert body['decision'] == 'open'


def test_turnstile_failure_reported(app, client, turnstile):
    turnstile.fail = True
    status, body = client.scan({'gate': 'MAIN-IN', 'lane': 1,
        'medium': 'qr', 'data': sign(9003)})
    assert status == 200 and body['decision'] == 'open'
    assert body['turnstile']['ok'] is False
    assert 'jammed' in body['turnstile']['error']
    assert app.turnstile_errors == 1


@pytest.mark.parametrize('body,field', [
    ({}, 'gate'),
    ({'gate': 'MAIN-IN'}, 'medium'),
    ({'gate': 'MAIN-IN', 'medium': 'qr'}, 'data'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': ''}, 'data'),
    ({'gate': 'MAIN-IN', 'medium': 'nfc', 'data': 'x'}, 'medium'),
    ({'gate': 'MAIN-IN', 'lane': 0, 'medium': 'qr', 'data': 'x'}, 'lane'),
    ({'gate': 'MAIN-IN', 'lane': 5, 'medium': 'qr', 'data': 'x'}, 'lane'),
    ({'gate': 'MAIN-IN', 'lane': '1', 'medium': 'qr', 'data': 'x'}, 'lane'),
    ({'gate': 'MAIN-IN', 'lane': True, 'medium': 'qr', 'data': 'x'}, 'lane'),
    ({'gate': 'ELSEWHERE', 'medium': 'qr', 'data': 'x'}, 'gate'),
    ({'gate': 99, 'medium': 'qr', 'data': 'x'}, 'gate'),
    ({'gate': ['MAIN-IN'], 'medium': 'qr', 'data': 'x'}, 'gate'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 5}, 'data'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 'x' * 5000}, 'data'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 'x', 'direction': 'up'},
        'direction'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 'x', 'image': '***'},
        'image'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 'x', 'id_type': 'visa'},
        'id_type'),
    ({'gate': 'MAIN-IN', 'medium': 'qr', 'data': 'x',
        'binding_confirmed': 'yes'}, 'binding_confirmed'),
])
def test_malformed_bodies(client, turnstile, body, field):
    status, answer = client.scan(body)
    assert status == 422
    assert answer['error']['code'] == 'invalid_request'
    assert answer['error']['field'] == field
    assert answer['error']['message']
    assert turnstile.opened == []


@pytest.mark.parametrize('raw', [b'', b'{', b'null', b'[]', b'"x"',
    b'\xff\xfe', b'{"gate": NaN}', b'[' * 100000])
def test_not_json(client, raw):
    status, answer = client.request('POST', '/scan', raw=raw)
    assert status == 422
    assert answer['error']['code'] == 'invalid_request'


def test_http_errors(client):
    assert client.request('GET', '/nothing')[0] == 404
    assert client.request('POST', '/nothing', {})[0] == 404
    assert client.request('PUT', '/scan', {})[0] == 405
    status, answer = client.request('POST', '/scan', raw=b'x' * 10,
        headers={'Content-Length': str(10 * 1024 * 1024)})
    assert status == 413


def test_status(client, synced_store):
    client.scan({'gate': 'MAIN-IN', 'lane': 1, 'medium': 'qr',
        'data': sign(9010)})
    status, body = client.request('GET', '/status')
    assert status == 200
    assert body['box'] == 42 and body['enrolled'] is True
    assert body['outbox'] == 1
    assert body['last_sync'] is not None
    assert body['devices'][0]['kind'] == 'turnstile'
    assert {g['code']: g['synced'] for g in body['gates']} == {
        'MAIN-IN': True, 'MAIN-OUT': True}


def test_photos(client, synced_store):
    image = b'\xff\xd8\xff\xe0-A-face'
    status, body = client.scan({'gate': 'MAIN-IN', 'lane': 1,
        'medium': 'qr', 'data': sign(9020, type_id=7, entries=0),
        'image': base64.b64encode(image).decode()})
    assert body['decision'] == 'open'
    url = body['bound_photo_url']
    status, data = client.request('GET', url)
    assert status == 200 and data == image
    card_url = '/photos/card-9-' + synced_store.photo_token(9)
    status, data = client.request('GET', card_url)
    assert status == 200 and data.startswith(b'\xff\xd8')
    assert client.request('GET', '/photos/nope')[0] == 404
    assert client.request('GET', '/photos/..%2Fbox.sqlite')[0] == 404
    assert client.request('GET', '/photos/card-10-'
        + synced_store.photo_token(10))[0] == 404


def test_token(app, server):
    app.api_token = 'sesame'
    status, body = Client(server).request('GET', '/status')
    assert status == 401 and body['error']['code'] == 'unauthorized'
    status, body = Client(server, 'wrong').scan({'gate': 'MAIN-IN'})
    assert status == 401
    assert Client(server, 'sesame').request('GET', '/status')[0] == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
scan_like = st.fixed_dictionaries({}, optional={
    'gate': st.sampled_from(['MAIN-IN', 'MAIN-OUT', 7, 8, '', 0])
        | json_values,
    'lane': st.integers(-2, 6) | json_values,
    'medium': st.sampled_from(['qr', 'rfid', 'id_card']) | json_values,
    'data': st.text(max_size=60) | json_values
        | st.just('SC1:') | st.just('04C0FFEE'),
    'direction': st.sampled_from(['in', 'out']) | json_values,
    'image': st.text(max_size=20) | json_values,
    'id_number': json_values,
    'id_type': json_values,
    'binding_confirmed': json_values,
})


@settings(max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow])
@given(body=scan_like | json_values)
def test_random_json_never_5xx_never_opens(client, turnstile, body):
    status, answer = client.scan(body)
    assert status in (200, 422), (status, answer)
    if status == 200:
        assert answer['decision'] == 'deny'
    else:
        assert answer['error']['code'] == 'invalid_request'
    assert turnstile.opened == []


@settings(max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_5xx(client, turnstile, raw):
    status, answer = client.request('POST', '/scan', raw=raw)
    assert status in (200, 422)
    assert status == 422 or answer['decision'] == 'deny'
    assert turnstile.opened == []


# --- who may call (issue 15 item 7) --------------------------------------

def _reentry(client, ticket=9030):
    "A face-bound ticket's first entry, then the same code again."
    image = base64.b64encode(b'\xff\xd8\xff\xe0-B-face').decode()
    code = sign(ticket, type_id=7, entries=0)
    status, first = client.scan({'gate': 'MAIN-IN', 'lane': 1,
        'medium': 'qr', 'data': code, 'image': image})
    assert first['decision'] == 'open', first
    client.scan({'gate': 'MAIN-OUT', 'lane': 1, 'medium': 'qr',
        'data': code, 'direction': 'out'})
    return code


def test_binding_confirmed_only_from_staff(app, server, client, turnstile):
    code = _reentry(client)
    opened = list(turnstile.opened)
    body = {'gate': 'MAIN-IN', 'lane': 1, 'medium': 'qr', 'data': code,
        'binding_confirmed': True}
    # no staff token configured: nobody may claim to be staff
    status, answer = client.scan(body)
    assert status == 403 and answer['error']['code'] == 'staff_only'
    assert answer['error']['field'] == 'binding_confirmed'
    app.api_token, app.staff_token = 'handheld-token-0123', \
        'staff-token-0123456'
    status, answer = Client(server, 'handheld-token-0123').scan(body)
    assert status == 403 and answer['error']['code'] == 'staff_only'
    assert turnstile.opened == opened
    status, answer = Client(server, 'staff-token-0123456').scan(body)
    assert status == 200 and answer['decision'] == 'open', answer
    # the staff token also does what handhelds do
    assert Client(server, 'staff-token-0123456').request(
        'GET', '/status')[0] == 200


def test_origin_and_host(app, client):
    body = {'gate': 'MAIN-IN', 'lane': 1, 'medium': 'qr', 'data': 'x'}
    status, answer = client.request('POST', '/scan', body,
        headers={'Origin': 'http://evil.example'})
    assert status == 403 and answer['error']['code'] == 'forbidden_origin'
    same = f'http://{client.host}:{client.port}'
    assert client.request('POST', '/scan', body,
        headers={'Origin': same})[0] == 200
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1
    status, answer = client.request('GET', '/status', headers={
        'Host': f'evil.example:{client.port}',
        'Origin': f'http://evil.example:{client.port}'})
    assert status == 403
    assert client.request('GET', '/status', headers={
        'Host': f'localhost:{client.port}'})[0] == 200
    app.allowed_origins = frozenset({'https://staff.example'})
    assert client.request('POST', '/scan', body,
        headers={'Origin': 'https://staff.example'})[0] == 200


@pytest.mark.parametrize('kind', [None, 'text/plain',
    'application/x-www-form-urlencoded', 'multipart/form-data'])
def test_content_type_required(client, turnstile, kind):
    data = json.dumps({'gate': 'MAIN-IN', 'lane': 1, 'medium': 'qr',
        'data': sign(9031)}).encode()
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    headers = {'Content-Length': str(len(data))}
    if kind:
        headers['Content-Type'] = kind
    conn.request('POST', '/scan', body=data, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 415
    assert answer['error']['code'] == 'unsupported_media_type'
    assert turnstile.opened == []


def test_card_photos_not_enumerable(client, synced_store):
    status, body = client.scan({'gate': 'MAIN-IN', 'lane': 1,
        'medium': 'rfid', 'data': '04A1B2C3D4'})
    url = body['bound_photo_url']
    assert url.startswith('/photos/card-9-') and len(url) > 40
    assert client.request('GET', url)[0] == 200
    for guess in ('/photos/card-9', '/photos/card-9-' + '0' * 32,
            url[:-1] + ('0' if url[-1] != '0' else '1'), url[:-1],
            '/photos/' + url.rsplit('-', 1)[1][:1]):
        assert client.request('GET', guess)[0] == 404, guess


def test_open_only_on_loopback(app):
    with pytest.raises(ValueError, match='token'):
        ApiServer(('0.0.0.0', 0), app)
    app.api_token = 'handheld-token-0123'
    server = ApiServer(('0.0.0.0', 0), app)
    server.server_close()


@settings(max_examples=120, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow])
@given(body=scan_like, headers=st.fixed_dictionaries({}, optional={
    'Origin': st.sampled_from(['http://evil.example', 'null', '']),
    'Content-Type': st.sampled_from(['text/plain', 'application/json',
        'application/json; charset=utf-8', 'multipart/form-data', '']),
    'Authorization': st.sampled_from(['Bearer handheld-token-0123',
        'Bearer staff-token-0123456', 'Bearer nope', 'Basic x', '']),
    'Host': st.sampled_from(['evil.example', 'localhost', '127.0.0.1']),
}))
def test_random_requests_never_open_never_5xx(app, client, turnstile, body,
        headers):
    "Whatever the headers, a request opens only on a valid ticket"
    app.api_token, app.staff_token = 'handheld-token-0123', \
        'staff-token-0123456'
    status, answer = client.request('POST', '/scan',
        raw=json.dumps(body).encode(), headers=headers)
    assert status in (200, 401, 403, 415, 422), (status, answer)
    if status == 200:
        assert answer['decision'] == 'deny'
    assert turnstile.opened == []
