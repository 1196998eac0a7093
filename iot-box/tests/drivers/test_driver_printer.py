"""The ESC/POS ticket printer: what is printed decodes back to the code."""
import pytest

from scenic_common import gate, ticketcode
from scenic_iotbox.drivers import create
from scenic_iotbox.drivers.printer import (
    PrintError, raster_images, render_job)
from scenic_iotbox.drivers.qr import ZxingDecoder
from datetime import datetime, timedelta, timezone


def signed_code(ticket_id=7):
    key = ticketcode.SigningKey.generate(1)
    keyring = ticketcode.Keyring()
    keyring.add(1, key.public_bytes())
    now = datetime.now(timezone.utc).replace(microsecond=0)
    payload = ticketcode.TicketPayload(ticket_id=ticket_id, area_id=1,
        ticket_type_id=3, valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(hours=8), persons=1, entries=1,
        key_id=1)
    return ticketcode.encode(payload, key), keyring


def ticket_job(code):
    return {'kind': 'ticket', 'title': '云山景区', 'code': code,
        'lines': ['成人票 Adult', '2026-12-04 09:00-09:30',
            '110105********002X', '¥100.00', '#7 W1-0001'],
        'holder': '110105********002X'}


def test_printed_qr_decodes_and_opens_a_gate():
    code, keyring = signed_code()
    printer = create('printer', 'memory')
    result = printer.print_job(ticket_job(code))
    assert result['bytes'] > 1000
    _, data, image = printer.jobs[0]
    assert data.startswith(b'\x1b@')  # ESC @: the printer is reset first
    assert b'\x1dV' in data[-8:]  # GS V: cut after the ticket
    decoded, = raster_images(data)
    assert decoded.size == image.size
    text, = ZxingDecoder().decode(decoded)
    assert text == code
    now = datetime.now(timezone.utc)
    decision = gate.decide_ticket(ticketcode.verify(text, keyring, now=now),
        gate.TicketTypeInfo(id=3), gate.GateInfo(id=1), now=now)
    assert decision.opened and decision.ticket == 7


def test_file_device_appends_and_writes_png(tmp_path):
    code, _ = signed_code()
    out = tmp_path / 'lp0'
    printer = create('printer', 'file', {'path': str(out),
            'png_dir': str(tmp_path / 'png')})
    first = printer.print_job(ticket_job(code))
    second = printer.print_job({'kind': 'receipt', 'title': 'X report',
            'lines': ['Cash: 2 × 200.00']})
    assert out.stat().st_size == first['bytes'] + second['bytes']
    assert len(raster_images(out.read_bytes())) == 2
    pngs = sorted(p.name for p in (tmp_path / 'png').iterdir())
    assert [p.split('-')[0] for p in pngs] == ['receipt', 'ticket']
    assert printer.status()['counters']['jobs'] == 2


def test_bad_jobs_and_no_paper_are_refused():
    printer = create('printer', 'memory')
    with pytest.raises(PrintError, match='signed code'):
        printer.print_job({'kind': 'ticket', 'lines': []})
    with pytest.raises(PrintError, match='kind'):
        printer.print_job({'kind': 'label'})
    with pytest.raises(PrintError, match='masked'):
        render_job({'kind': 'ticket', 'code': 'x', 'lines': [],
                'holder': '11010519491231002X'[:17] + '9'})
    assert printer.status()['errors'] == 2
    empty = create('printer', 'memory', {'paper': 'out'})
    with pytest.raises(PrintError, match='paper'):
        empty.print_job({'kind': 'receipt', 'lines': []})
    status = empty.status()
    assert status['ok'] is False and status['paper'] == 'out'
    with pytest.raises(ValueError):
        create('printer', 'file')   # no path
