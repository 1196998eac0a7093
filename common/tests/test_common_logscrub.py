"""Log lines never carry ID numbers or phones (issue 15)."""
import logging

import pytest

from scenic_common import logscrub
from scenic_common.idnumber import make_resident_id

ID = '11010519491231002X'


@pytest.mark.parametrize('text', [
    f"scenic.visitor.create([{{'id_number': '{ID}'}}])",
    f"('{ID[:17]}…', '13800138000')",        # trytond's 17-character cut
    f"GET /demo/scenic/v1/orders?id_number={ID}&phone=13800138000 HTTP/1.1",
    f"id_number={ID.lower()}",
    "phone +86 138-0013-8000", "phone 138 0013 8000", "tel:8613800138000",
    "passport E12345678", "permit HA1234567",
    f"old id {make_resident_id()[:15]}",
])
def test_scrub(text):
    scrubbed = logscrub.scrub(text)
    assert logscrub.MASK in scrubbed
    for secret in (ID[:12], '13800138000', '0013', '12345678', '1234567'):
        assert secret not in scrubbed, scrubbed


@pytest.mark.parametrize('text', ['order 1234 paid 120.00',
    'slot 21 at 2026-12-04T10:00:00+08:00', 'in 12 ms', 'box 42:secret'])
def test_ordinary_lines_kept(text):
    assert logscrub.scrub(text) == text


def test_filter_on_loggers(caplog):
    logscrub.install()
    logscrub.install()
    dispatcher = logging.getLogger('trytond.protocols.dispatcher')
    assert len([f for f in dispatcher.filters
        if isinstance(f, logscrub.ScrubFilter)]) == 1
    with caplog.at_level(logging.INFO):
        dispatcher.info('%s.%s%s from %s in %i ms', 'model.scenic.visitor',
            'create', ([{'id_number': ID[:17] + '…'}],), 'admin', 3)
        try:
            raise ValueError(f'bad {ID}')
        except ValueError:
            dispatcher.exception('call with %r', (ID,))
        logging.getLogger('gunicorn.access').info(
            '%(h)s "%(r)s" %(s)s', {'h': '10.0.0.1', 's': '405',
                'r': f'GET /demo/scenic/v1/orders?phone=13800138000'
                f'&id_number={ID} HTTP/1.1'})
    text = caplog.text
    assert ID[:11] not in text and '13800138000' not in text, text
    assert text.count(logscrub.MASK) >= 4
    assert 'model.scenic.visitor' in text and '405' in text
