"""The turnstile serial protocol: encoding, stuffing, parsing, decoding.

The byte strings here are the examples of DRIVERS.md: if one changes,
change both."""
import pytest

from scenic_iotbox.drivers import turnstile_protocol as tp


def hexbytes(text):
    return bytes.fromhex(text)


DOC_EXAMPLES = [
    (tp.Open(7, 2, 3, 'in'), '02 05 4F 07 10 22 01 10 23 DD 03'),
    (tp.Ack(7), '02 10 22 06 07 BD 03'),
    (tp.Nak(8, 'bad_lane'), '02 10 23 15 08 10 22 FE 03'),
    (tp.StatusRequest(9), '02 10 22 53 09 DA 03'),
    (tp.Status(9, (tp.LaneStatus(1, 'open', 2, (), 1234, 56),)),
        '02 0F 73 09 01 01 01 10 22 00 00 00 04 D2 00 00 00 38 9D 03'),
    (tp.Passage(0x41, 2, 'in', 2), '02 05 50 41 10 22 01 10 22 37 03'),
    (tp.Alarm(0x42, 1, 'tailgating', True), '02 05 41 42 01 01 01 E9 03'),
    (tp.Open(2, 3, 16, 'out'), '02 05 4F 10 22 10 23 10 22 10 30 BE 03'),
]


def test_crc8_check_value():
    assert tp.crc8(b'123456789') == 0xF4         # CRC-8/SMBUS
    assert tp.crc8(b'') == 0


@pytest.mark.parametrize('message,wire', DOC_EXAMPLES)
def test_documented_examples(message, wire):
    assert message.encode() == hexbytes(wire)
    parser = tp.FrameParser()
    frames = parser.feed(hexbytes(wire))
    assert len(frames) == 1
    assert tp.decode(frames[0]) == message
    assert parser.stats() == {'frames': 1, 'discarded_bytes': 0,
        'corrupt_frames': 0}


def test_stuffing_keeps_stx_etx_out_of_frames():
    # every special byte in the payload, the length and the CRC
    for payload in (b'\x02\x03\x10', bytes(range(256))[:254], b'\x10' * 50):
        wire = tp.encode_frame(0x99, payload)
        assert wire[0] == tp.STX and wire[-1] == tp.ETX
        assert tp.STX not in wire[1:-1] and tp.ETX not in wire[1:-1]
        frames = tp.FrameParser().feed(wire)
        assert [(f.command, f.payload) for f in frames] == [(0x99, payload)]


def test_payload_limits():
    tp.encode_frame(0x99, bytes(254))
    with pytest.raises(ValueError):
        tp.encode_frame(0x99, bytes(255))
    with pytest.raises(ValueError):
        tp.Open(1, 300, 1).encode()
    with pytest.raises(ValueError):
        tp.Open(1, 1, 0).encode()


def test_resynchronises_after_noise_and_counts():
    good = tp.Passage(5, 1, 'in', 0).encode()
    parser = tp.FrameParser()
    noise = b'\xff\x00abc\x03\x03'
    frames = parser.feed(noise + good + b'\x99' + good)
    assert [tp.decode(f) for f in frames] == [tp.Passage(5, 1, 'in', 0)] * 2
    assert parser.discarded_bytes == len(noise) + 1
    assert parser.corrupt_frames == 0


def test_frame_cut_by_new_start_byte():
    good = tp.Ack(3).encode()
    parser = tp.FrameParser()
    frames = parser.feed(good[:4] + good)       # partial frame, then whole
    assert [tp.decode(f) for f in frames] == [tp.Ack(3)]
    assert parser.corrupt_frames == 1
    assert parser.discarded_bytes == 4


def test_byte_by_byte_feeding():
    wire = b''.join(m.encode() for m, _ in DOC_EXAMPLES)
    parser = tp.FrameParser()
    frames = []
    for byte in wire:
        frames += parser.feed(bytes((byte,)))
    assert [tp.decode(f) for f in frames] == [m for m, _ in DOC_EXAMPLES]


@pytest.mark.parametrize('wire', [
    '02 05 4F 07 10 22 01 10 23 DE 03',     # wrong CRC
    '02 04 4F 07 10 22 01 10 23 DD 03',     # wrong length
    '02 03',                                 # nothing
    '02 00 00 03',                           # LEN 0
    '02 05 4F 07 10 55 01 10 23 DD 03',     # DLE + not an escaped byte
    '02 05 4F 07 10 03',                     # DLE + ETX
])
def test_corrupt_frames_are_counted_and_dropped(wire):
    parser = tp.FrameParser()
    assert parser.feed(hexbytes(wire)) == []
    assert parser.corrupt_frames == 1
    assert parser.discarded_bytes == len(hexbytes(wire))
    # and the parser still works
    assert len(parser.feed(tp.Ack(1).encode())) == 1


def test_oversized_frame_is_dropped():
    parser = tp.FrameParser()
    assert parser.feed(b'\x02' + b'\x41' * 1000 + b'\x03') == []
    assert parser.corrupt_frames == 1
    assert parser.discarded_bytes == 1002
    assert len(parser._body) == 0


@pytest.mark.parametrize('command,payload,reason', [
    (tp.OPEN, b'\x01\x01\x01', 'bad_length'),
    (tp.OPEN, b'\x01\x01\x01\x00', 'bad_value'),         # 0 passages
    (tp.OPEN, b'\x01\x01\x07\x01', 'bad_value'),         # direction 7
    (tp.ACK, b'', 'bad_length'),
    (tp.STATUS, b'\x01\x02' + bytes(12), 'bad_length'),  # 2 lanes, 1 sent
    (tp.STATUS, b'\x01\x01\x01\x09' + bytes(10), 'bad_value'),  # state 9
    (tp.ALARM, b'\x01\x01\x01\x05', 'bad_value'),
    (0x7F, b'\x01', 'unknown_command'),
])
def test_decode_refuses_nonsense(command, payload, reason):
    frame = tp.FrameParser().feed(tp.encode_frame(command, payload))[0]
    with pytest.raises(tp.ProtocolError) as info:
        tp.decode(frame)
    assert info.value.reason == reason
    assert info.value.nak_code in tp.NAK_REASONS


def test_unknown_alarm_code_and_nak_reason_are_kept():
    frame = tp.FrameParser().feed(tp.encode_frame(tp.ALARM,
        b'\x01\x02\x63\x01'))[0]
    assert tp.decode(frame) == tp.Alarm(1, 2, 'unknown_99', True)
    frame = tp.FrameParser().feed(tp.encode_frame(tp.NAK, b'\x01\x63'))[0]
    assert tp.decode(frame) == tp.Nak(1, 'unknown_99')


def test_status_round_trip_with_alarms_and_many_lanes():
    lanes = tuple(tp.LaneStatus(n, 'alarm', n % 256,
        ('forced', 'jam') if n % 2 else ('tailgating',), 2**32 - n, n)
        for n in range(1, tp.MAX_LANES + 1))
    status = tp.Status(200, lanes)
    frame = tp.FrameParser().feed(status.encode())[0]
    decoded = tp.decode(frame)
    assert decoded == status
    assert decoded.lane(3).alarms == ('forced', 'jam')
    with pytest.raises(ValueError):
        tp.Status(1, lanes + lanes[:1]).encode()
