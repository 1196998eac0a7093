"""A simulated OTA partner: signs its calls to the partner API and receives
Scenic's notices, checking their signatures and de-duplicating them by
notice id. It can be told to fail or to be slow, so that the tests, the
benchmark and the demo exercise the whole loop.

    python -m scenic_common.simpartner --listen 127.0.0.1:8200 \\
        --key demo-ota --notice-secret demo-ota-notice-secret

    GET  /notices         what was received (JSON)
    POST /notices         a notice from Scenic (signed)
    POST /control         {"fail": true|false, "delay": seconds}
"""
import argparse
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import partnersign

NOTICE_ID_HEADER = 'X-Scenic-Notice-Id'


class PartnerClient:
    "Signed calls to the partner API of one database."

    def __init__(self, base_url, key_id, secret, timeout=30):
        # base_url: http://host:port/<db>/scenic/partner/v1
        self.base_url = base_url.rstrip('/')
        self.key_id = key_id
        self.secret = secret
        self.timeout = timeout
        self.signing_seconds = 0.0

    def request(self, method, path, body=None, query=''):
        "Return (HTTP status, decoded JSON body)."
        data = b'' if body is None else json.dumps(body).encode()
        url = self.base_url + path + (f'?{query}' if query else '')
        started = time.perf_counter()
        headers = partnersign.signed_headers(
            self.key_id, self.secret, method,
            urllib.parse.urlsplit(url).path, query, data)
        self.signing_seconds += time.perf_counter() - started
        request = urllib.request.Request(url, data=data or None,
            method=method, headers={
                'Content-Type': 'application/json', **headers})
        try:
            with urllib.request.urlopen(
                    request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b'{}')
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b'{}')

    def get(self, path, query=''):
        return self.request('GET', path, query=query)

    def post(self, path, body=None):
        return self.request('POST', path, body=body if body is not None
            else {})


class SimulatedPartner:
    """An HTTP server taking notices at /notices.

    `handled` holds each notice once (the partner's handler ran for it), in
    arrival order; `deliveries` counts every POST, duplicates included.
    """

    def __init__(self, key_id, notice_secret, host='127.0.0.1', port=0):
        self.key_id = key_id
        self.notice_secret = notice_secret
        self.fail = False
        self.delay = 0.0
        self.deliveries = 0
        self.refused = 0
        self.handled = []  # payloads, first delivery of each notice id
        self._seen = set()
        self._lock = threading.Lock()
        self._nonces = set()
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, data):
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != '/notices':
                    return self._reply(404, {})
                with partner._lock:
                    data = {'handled': list(partner.handled),
                        'deliveries': partner.deliveries,
                        'refused': partner.refused}
                self._reply(200, data)

            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                path, _, query = self.path.partition('?')
                if path == '/control':
                    data = json.loads(body or b'{}')
                    partner.fail = bool(data.get('fail', partner.fail))
                    partner.delay = float(data.get('delay', partner.delay))
                    return self._reply(200, {'fail': partner.fail,
                            'delay': partner.delay})
                if path != '/notices':
                    return self._reply(404, {})
                status, data = partner.receive(
                    self.command, path, query, self.headers, body)
                self._reply(status, data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = None

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f'http://{host}:{port}/notices'

    def receive(self, method, path, query, headers, body):
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.deliveries += 1
            if self.fail:
                return 503, {'error': 'simulated failure'}
            try:
                key, ts, nonce, signature = partnersign.parse_headers(
                    headers)
                partnersign.check_timestamp(ts)
                if key != self.key_id or not partnersign.verify(
                        [self.notice_secret], method, path, query, ts,
                        nonce, body, signature):
                    raise partnersign.SignatureError(
                        'bad_signature', "bad signature")
                if nonce in self._nonces:
                    raise partnersign.SignatureError(
                        'replayed_nonce', "replayed nonce")
            except partnersign.SignatureError as error:
                self.refused += 1
                return 401, {'error': error.code}
            self._nonces.add(nonce)
            notice_id = headers.get(NOTICE_ID_HEADER)
            if notice_id not in self._seen:
                self._seen.add(notice_id)
                self.handled.append(json.loads(body))
            return 200, {'ok': True}

    def start(self):
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--listen', default='127.0.0.1:8200')
    parser.add_argument('--key', required=True)
    parser.add_argument('--notice-secret', required=True)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(':')
    partner = SimulatedPartner(args.key, args.notice_secret, host,
        int(port))
    print(f"simulated partner: notices at {partner.url}", flush=True)
    try:
        partner.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        partner.server.server_close()


if __name__ == '__main__':
    main()
