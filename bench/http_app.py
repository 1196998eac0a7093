"""The WSGI application bench/http_servers.py serves: it reads the request
body and answers an order-sized JSON document at once, so that the figures
are the HTTP server's own cost."""
import json

ANSWER = json.dumps({
        'order': 'W2612050001ABCD', 'state': 'reserved', 'total': '300.00',
        'currency': 'CNY', 'visit_date': '2026-12-05',
        'slot': {'id': 123456, 'start': '2026-12-05T10:00:00+08:00',
            'end': '2026-12-05T10:30:00+08:00'},
        'contact_name': '王伟',
        'hold_expires_at': '2026-12-04T20:15:00+08:00',
        'lines': [{'ticket_type': 'ADULT', 'name': '成人票', 'quantity': 2,
                'persons': 2, 'unit_price': '150.00', 'amount': '300.00'}],
        'tickets': [],
        }, ensure_ascii=False).encode()
HEADERS = [('Content-Type', 'application/json'),
    ('Content-Length', str(len(ANSWER)))]


def app(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    if length:
        environ['wsgi.input'].read(length)
    start_response('200 OK', HEADERS)
    return [ANSWER]
