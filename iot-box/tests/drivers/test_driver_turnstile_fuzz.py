"""Property tests: the turnstile parser against noise and corruption."""
from hypothesis import HealthCheck, given, settings, strategies as st

from scenic_iotbox.drivers import turnstile_protocol as tp

SETTINGS = settings(max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def crc_ok(frame):
    body = bytes((len(frame.payload) + 1, frame.command)) + frame.payload
    return tp.crc8(body) == frame.crc


def feed_in_chunks(parser, data, cuts):
    frames = []
    start = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        frames += parser.feed(data[start:cut])
        start = cut
    return frames


def decoded(frames):
    """Messages of the frames, skipping those that mean nothing."""
    out = []
    for frame in frames:
        try:
            out.append(tp.decode(frame))
        except tp.ProtocolError:
            pass
    return out


@SETTINGS
@given(st.binary(max_size=2000), st.lists(st.integers(0, 5000), max_size=8))
def test_noise_never_raises_nor_opens(noise, cuts):
    parser = tp.FrameParser()
    frames = feed_in_chunks(parser, noise, cuts)
    assert all(crc_ok(f) for f in frames)
    assert not any(isinstance(m, tp.Open) for m in decoded(frames))
    stats = parser.stats()
    assert stats['frames'] == len(frames)
    assert stats['discarded_bytes'] <= len(noise)


# Noise made of protocol bytes is the harder case: it looks like frames.
protocol_bytes = st.lists(st.sampled_from([0x02, 0x03, 0x10, 0x22, 0x23,
    0x30, 0x4F, 0x05, 0x01, 0x00, 0xFF]), max_size=600).map(bytes)


@SETTINGS
@given(protocol_bytes)
def test_protocol_like_noise(noise):
    parser = tp.FrameParser()
    frames = parser.feed(noise)
    assert all(crc_ok(f) for f in frames)
    assert not any(isinstance(m, tp.Open) for m in decoded(frames))


messages = st.one_of(
    st.builds(tp.Open, st.integers(0, 255), st.integers(0, 255),
        st.integers(1, 255), st.sampled_from(['in', 'out'])),
    st.builds(tp.Ack, st.integers(0, 255)),
    st.builds(tp.Nak, st.integers(0, 255),
        st.sampled_from(sorted(tp.NAK_REASONS.values()))),
    st.builds(tp.StatusRequest, st.integers(0, 255)),
    st.builds(tp.Passage, st.integers(0, 255), st.integers(0, 255),
        st.sampled_from(['in', 'out']), st.integers(0, 255)),
    st.builds(tp.Alarm, st.integers(0, 255), st.integers(0, 255),
        st.sampled_from(sorted(tp.ALARM_CODES.values())), st.booleans()),
    st.builds(tp.Status, st.integers(0, 255), st.lists(st.builds(
        tp.LaneStatus, st.integers(0, 255),
        st.sampled_from(sorted(tp.LANE_STATES.values())),
        st.integers(0, 255),
        st.lists(st.sampled_from(sorted(tp.ALARM_CODES.values())),
            unique=True).map(lambda a: tuple(sorted(a,
                key=list(tp.ALARM_CODES.values()).index))),
        st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
        max_size=tp.MAX_LANES).map(tuple)),
)


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=12),
    st.lists(st.integers(0, 5000), max_size=8))
def test_valid_frames_round_trip_in_any_chunking(batch, cuts):
    wire = b''.join(m.encode() for m in batch)
    frames = feed_in_chunks(tp.FrameParser(), wire, cuts)
    assert [tp.decode(f) for f in frames] == batch


corruption = st.lists(st.tuples(
    st.sampled_from(['flip', 'drop', 'insert', 'replace']),
    st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


def corrupt(data, edits):
    data = bytearray(data)
    for kind, position, value in edits:
        if not data:
            data.append(value)
            continue
        i = position % len(data)
        if kind == 'flip':
            data[i] ^= 1 << (value % 8)
        elif kind == 'drop':
            del data[i]
        elif kind == 'insert':
            data.insert(i, value)
        else:
            data[i] = value
    return bytes(data)


@SETTINGS
@given(st.lists(st.tuples(messages, st.one_of(st.none(), corruption)),
    min_size=1, max_size=10), st.binary(max_size=20))
def test_corrupted_frames_never_break_the_good_ones(items, noise):
    """Valid frames, some of them corrupted, with noise in front: every
    frame the parser yields has a right CRC, every untouched frame comes
    out, in order, and the parser never raises."""
    wire = noise
    intact = []
    for message, edits in items:
        data = message.encode()
        if edits is None:
            intact.append(message)
        else:
            data = corrupt(data, edits)
        wire += data
    parser = tp.FrameParser()
    frames = parser.feed(wire)
    assert all(crc_ok(f) for f in frames)
    out = iter(decoded(frames))
    # the untouched messages are a subsequence of what came out
    assert all(any(m == got for got in out) for m in intact)
