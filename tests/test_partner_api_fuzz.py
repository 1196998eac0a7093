"""The partner API against its own contract (issue 15): schemathesis
generates requests from the OpenAPI document the demo serves, each one is
signed as the contract says (scenic_common.partnersign, the demo's
`demo-ota` partner, a new nonce each) over the exact bytes sent, and every
answer is checked: never a 5xx, status codes, content types and bodies as
documented, and no ID number in an answer that the request did not send.
Bounded: a few examples per operation (SCENIC_FUZZ_EXAMPLES)."""
import json
import os
from urllib.parse import urlencode, urlsplit

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance,
    status_code_conformance)

from demo_group import OTA_KEY, OTA_SECRET  # noqa: E402 (scripts/)
from scenic_common import partnersign
from test_api_fuzz import ID_NUMBER

EXAMPLES = int(os.environ.get("SCENIC_FUZZ_EXAMPLES", 12))
CHECKS = [not_a_server_error, status_code_conformance,
    content_type_conformance, response_schema_conformance]


def signed_call(case, base_url):
    """Send `case` signed by the demo partner; the response and what was
    sent (for the leak check)."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    method = kwargs['method'].upper()
    url = kwargs['url']
    query = urlencode(kwargs.get('params') or {}, doseq=True)
    headers = {k: v for k, v in (kwargs.get('headers') or {}).items()
        if not k.lower().startswith('x-scenic-')}
    if 'json' in kwargs and kwargs['json'] is not None:
        body = json.dumps(kwargs['json']).encode()
        headers['Content-Type'] = 'application/json'
    else:
        body = kwargs.get('data') or b''
        if isinstance(body, str):
            body = body.encode()
    headers.update(partnersign.signed_headers(OTA_KEY, OTA_SECRET, method,
            urlsplit(url).path, query, body))
    response = requests.request(method, url + (f'?{query}' if query else ''),
        data=body or None, headers=headers, timeout=30,
        allow_redirects=False)
    return response, body.decode('utf-8', 'replace') + query + url


def test_partner_api_keeps_its_contract(demo_server):
    """Every operation of the partner document, EXAMPLES signed cases
    each; a signed call is never refused for its signature."""
    base = f'{demo_server.url}/{demo_server.database}/scenic/partner/v1'
    schema = schemathesis.openapi.from_url(f'{base}/openapi.json')
    operations = [result.ok() for result in schema.get_all_operations()]
    # products, calendar, orders, an order, its pay, cancel and refund
    assert len(operations) >= 7
    refused = []

    def check(case):
        response, sent = signed_call(case, base)
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 401:
            refused.append((case.method, case.path, response.text))
        for number in ID_NUMBER.findall(response.text):
            assert number in sent, f'ID number {number} in the answer'

    for operation in operations:
        run = settings(max_examples=EXAMPLES, deadline=None,
            derandomize=True, database=None,
            suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy())(check))
        run()
    assert refused == []
