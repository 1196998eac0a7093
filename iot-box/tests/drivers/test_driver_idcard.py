"""ID-card reader interface and the simulated reader."""
from datetime import date

import pytest

from drivers_helpers import wait_for
from scenic_common.idnumber import make_resident_id
from scenic_iotbox.drivers import create
from scenic_iotbox.drivers.idcard import (IDCardData, IDCardPoller,
    IDCardReader, SimulatedIDCardReader)

NUMBER = make_resident_id('110101', date(1990, 3, 7), 123)
OTHER = make_resident_id('310104', date(1985, 12, 1), 456)


def card(number=NUMBER, name='张三', photo=b'\xff\xd8\xff\xe0 jpeg'):
    return IDCardData(name, number, photo)


def test_interface_is_abstract():
    with pytest.raises(TypeError):
        IDCardReader()


def test_repr_masks_personal_data():
    text = repr(card())
    assert NUMBER not in text and '张三' not in text
    assert NUMBER[-4:] in text


def test_simulated_reader_place_take_and_tap():
    reader = SimulatedIDCardReader()
    assert reader.read() is None
    reader.place(card())
    assert reader.read() == card()
    assert reader.read() == card()              # still on the reader
    reader.take()
    assert reader.read() is None
    reader.tap(card(OTHER, '李四', None))
    assert reader.read().id_number == OTHER
    assert reader.read() is None


def test_invalid_numbers_are_refused_and_counted():
    reader = SimulatedIDCardReader()
    bad = NUMBER[:-1] + ('0' if NUMBER[-1] != '0' else '1')
    for number in (bad, '123', '', None):
        reader.tap(IDCardData('王五', number))
        assert reader.read() is None
    assert reader.counters['invalid_cards'] == 4
    assert reader.status()['errors'] == 4
    # a lowercase x and full-width digits are normalised
    x_number = next(make_resident_id(sequence=s) for s in range(1000)
        if make_resident_id(sequence=s).endswith('X'))
    reader.tap(IDCardData(' 赵六 ', x_number.lower()))
    data = reader.read()
    assert data.id_number == x_number and data.name == '赵六'
    reader.tap(IDCardData('孙七', NUMBER, photo_jpeg=b'x' * 100_000))
    assert reader.read().photo_jpeg is None     # not a card photo


def test_poller_reports_each_presentation_once():
    reader = SimulatedIDCardReader()
    poller = IDCardPoller(reader, gate='MAIN-IN', release_after=2)
    reader.place(card())
    assert poller.poll_card() == card()
    assert poller.poll_card() is None           # still the same card
    reader.take()
    assert poller.poll_card() is None
    reader.place(card())
    assert poller.poll_card() is None           # one empty read: flicker
    reader.take()
    poller.poll_card()
    poller.poll_card()
    reader.place(card())
    assert poller.poll_card() == card()         # presented again
    reader.place(card(OTHER))
    assert poller.poll_card().id_number == OTHER


class BrokenReader(IDCardReader):
    def read(self):
        raise OSError('vendor library lost the USB device')


def test_poller_survives_a_raising_reader():
    poller = IDCardPoller(BrokenReader(name='vendor'), gate='G')
    assert poller.poll_card() is None
    assert poller.counters['read_errors'] == 1
    assert poller.status()['errors'] == 1


def test_registry_sim_calls_on_read_with_the_number():
    reads = []
    poller = create('idcard', 'sim', {'gate': 'MAIN-IN', 'lane': 2,
        'interval': 0.01, 'cards': [{'name': '张三', 'id_number': NUMBER},
            {'name': '李四', 'id_number': OTHER}]})
    with poller.start(lambda *args: reads.append(args)):
        assert wait_for(lambda: len(reads) == 2)
    assert reads == [('MAIN-IN', 2, 'id_card', NUMBER, None),
        ('MAIN-IN', 2, 'id_card', OTHER, None)]
    assert poller.last.name == '李四'


def test_start_needs_a_gate():
    with pytest.raises(ValueError):
        IDCardPoller(SimulatedIDCardReader()).start(print)
