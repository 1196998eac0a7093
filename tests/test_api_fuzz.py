"""The booking API against its own contract (issue 15): schemathesis
generates requests from the OpenAPI document the demo serves and checks
every answer: never a 5xx, status codes, content types and bodies as
documented, and no ID number in an answer to a caller that did not send
it. Bounded: a few examples per operation (SCENIC_FUZZ_EXAMPLES)."""
import datetime as dt
import os
import re
import sys

import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance,
    status_code_conformance)

from load_demo import DEMO_WEB_KEY  # noqa: E402 (scripts/, on sys.path)
EXAMPLES = int(os.environ.get("SCENIC_FUZZ_EXAMPLES", 12))
# an 18-character resident ID (or 15 digits of an old one) anywhere
ID_NUMBER = re.compile(r'(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])'
    r'|(?<![0-9A-Za-z])[0-9]{15}(?![0-9A-Za-z])')


def _check(case):
    headers = {'Authorization': f'Bearer {DEMO_WEB_KEY}'}
    response = case.call(headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error,
        status_code_conformance, content_type_conformance,
        response_schema_conformance])
    sent = str(case.body) + str(case.query) + str(case.path_parameters)
    for number in ID_NUMBER.findall(response.text):
        assert number in sent, f'ID number {number} in the answer'


def test_booking_api_keeps_its_contract(demo_server):
    """Every operation of the document, EXAMPLES generated cases each
    (schemathesis's strategies driven by hypothesis directly: its pytest
    plugin does not load with this pytest)."""
    schema = schemathesis.openapi.from_url(
        f'{demo_server.url}/{demo_server.database}/scenic/v1/openapi.json')
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        run = settings(max_examples=EXAMPLES, deadline=None,
            derandomize=True, database=None,
            suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy())(_check))
        run()



NEGATIVE_EXAMPLES = int(os.environ.get("SCENIC_FUZZ_NEGATIVE_EXAMPLES", 40))


def _breaks_what_we_send(case):
    """Whether the generated case breaks the document in what the server
    reads: schemathesis may negate only the Authorization header (replaced
    by the demo key below) or add undeclared query parameters (ignored, as
    HTTP APIs do), which leaves a valid request."""
    negative = {location.value for location, info
        in case.meta.components.items()
        if info.mode is GenerationMode.NEGATIVE}
    if negative & {'body', 'path'}:
        return True
    if 'query' in negative:
        try:
            dt.date.fromisoformat((case.query or {}).get('date'))
        except (TypeError, ValueError):
            return True
    if 'header' in negative:
        key = (case.headers or {}).get('Idempotency-Key')
        declared = any(p.get('name') == 'Idempotency-Key'
            for p in case.operation.definition.raw.get('parameters', []))
        if declared and (not isinstance(key, str) or not key.strip()
                or len(key.strip()) > 200):
            return True
    return False


def _check_refused(case, counts):
    """A request that breaks the document is refused with a 4xx and the
    API's error object: never a 5xx, never a traceback, never accepted."""
    assume(_breaks_what_we_send(case))
    headers = {'Authorization': f'Bearer {DEMO_WEB_KEY}'}
    response = case.call(headers=headers, timeout=30)
    sent = (f'{case.method} {case.formatted_path} query={case.query!r:.200}'
        f' body={case.body!r:.300}')
    assert 400 <= response.status_code < 500, (
        f'{response.status_code} for {sent}: {response.text[:300]}')
    assert 'Traceback' not in response.text, sent
    content_type = {k.lower(): v for k, v in response.headers.items()}.get(
        'content-type', [''])
    if 'json' in str(content_type):
        error = response.json()['error']
        assert error['code'] and error['message'], sent
    else:
        # a path no API route matches (a negative ticket number): trytond's
        # router answers itself, without the API's error object
        assert response.status_code in (404, 405), sent
    counts[case.operation.label] = counts.get(case.operation.label, 0) + 1


def test_booking_api_refuses_bad_requests(demo_server):
    """Hundreds of requests generated to break the OpenAPI schemas
    (schemathesis's negative mode: wrong types, missing or extra fields,
    too long strings and lists, out-of-range numbers, bad dates, paths and
    Idempotency-Keys) each get a 4xx error object."""
    schema = schemathesis.openapi.from_url(
        f'{demo_server.url}/{demo_server.database}/scenic/v1/openapi.json')
    counts = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        check = settings(max_examples=NEGATIVE_EXAMPLES, deadline=None,
            derandomize=True, database=None,
            suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy(
                    generation_mode=GenerationMode.NEGATIVE))(
                lambda case: _check_refused(case, counts)))
        try:
            check()
        except Unsatisfiable:
            # nothing the server reads can break the document (a string
            # path parameter, no parameters at all): those operations are
            # fuzzed by test_booking_api_keeps_its_contract
            continue
    bodies = [label for label in counts if label.startswith('POST')]
    assert len(bodies) >= 3, counts
    assert sum(counts.values()) >= 5 * NEGATIVE_EXAMPLES, counts
    print(f"\nrefused {sum(counts.values())} bad requests: {counts}",
        file=sys.stderr)
