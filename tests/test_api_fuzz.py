"""The booking API against its own contract (issue 15): schemathesis
generates requests from the OpenAPI document the demo serves and checks
every answer: never a 5xx, status codes, content types and bodies as
documented, and no ID number in an answer to a caller that did not send
it. Bounded: a few examples per operation (SCENIC_FUZZ_EXAMPLES)."""
import os
import re

import schemathesis
from hypothesis import HealthCheck, given, settings
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
