"""A small JSON-RPC client of trytond, as sao talks to it: what the back
office sees (e.g. a zone's live headcount) and what its buttons do.

    rpc = TrytonRPC('http://127.0.0.1:8000', 'demo', 'admin', 'admin')
    rpc.model('scenic.zone', 'read', [1], ['inside'])
"""
import base64
import json
import urllib.request


class RPCError(RuntimeError):
    "trytond answered with an error (its payload is `.error`)."

    def __init__(self, method, error):
        super().__init__(f"{method}: {error}")
        self.error = error


class TrytonRPC:
    def __init__(self, url, database, login, password, language='en',
            timeout=30):
        self.url = f"{url.rstrip('/')}/{database}/rpc/"
        self.timeout = timeout
        self.authorization = None
        user_id, session = self.call('common.db.login', login,
            {'password': password}, language)[:2]
        self.authorization = 'Session ' + base64.b64encode(
            f'{login}:{user_id}:{session}'.encode()).decode()
        self.context = self.call('model.res.user.get_preferences', True, {})

    def call(self, method, *params):
        body = json.dumps({'id': 1, 'method': method,
                'params': list(params)}).encode()
        headers = {'Content-Type': 'application/json'}
        if self.authorization:
            headers['Authorization'] = self.authorization
        request = urllib.request.Request(self.url, data=body,
            headers=headers, method='POST')
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            data = json.loads(answer.read())
        if data.get('error'):
            raise RPCError(method, data['error'])
        return data['result']

    def model(self, name, method, *args):
        "model.<name>.<method>(*args, context)"
        return self.call(f'model.{name}.{method}', *args, self.context)
