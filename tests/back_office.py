"""The back office as the tests reach it: Tryton's own client, proteus,
over the server's RPC, logged in as one user (its rights, its language).

    office = back_office('http://127.0.0.1:8000', 'demo', 'gate', 'gate-demo')
    Zone = Model.get('scenic.zone', config=office)
"""
from urllib.parse import quote, urlsplit

from proteus.config import XmlrpcConfig


def back_office(url, database, login, password):
    "A proteus configuration (for Model.get(..., config=)) as `login`."
    host = urlsplit(url).netloc
    return XmlrpcConfig(f'http://{quote(login, safe="")}:'
        f'{quote(password, safe="")}@{host}/{database}/rpc/')
