"""QR decoding from camera frames (zxing-cpp and pyzbar), sources, wedge."""
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from drivers_helpers import noisy_frame, paste, qr_array, wait_for
from scenic_iotbox.drivers import create
from scenic_iotbox.drivers.qr import (CameraQRReader, ImageSource,
    KeyboardWedge, LineSplitter, WedgeQRReader, as_gray, make_decoder)

BACKENDS = ['zxing', 'pyzbar']
CODE = 'SC1:NBQWY3DPEB3W64TMMQQHEZLBNRXCA43JM5XGKZDUNFRWW2LU'


@pytest.fixture(params=BACKENDS)
def decoder(request):
    return create('qr_decoder', request.param)


def frame_with(*codes, seed=1, scale=4):
    frame = noisy_frame(seed)
    left = 30
    for text in codes:
        image = qr_array(text, scale=scale)
        frame = paste(frame, image, 60, left)
        left += image.shape[1] + 20
    return frame


def test_decodes_a_code_in_a_noisy_640x480_frame(decoder):
    frame = frame_with(CODE)
    assert frame.shape == (480, 640)
    assert decoder.decode(frame) == [CODE]
    assert decoder.counters['decoded'] == 1


def test_colour_rotated_and_two_codes(decoder):
    gray = frame_with('SC1:FIRST', 'SC1:SECOND', scale=3)
    rgb = np.stack([gray, gray // 2 + 60, gray], axis=-1)
    assert sorted(decoder.decode(rgb)) == ['SC1:FIRST', 'SC1:SECOND']
    rotated = np.ascontiguousarray(np.rot90(frame_with(CODE)))
    assert decoder.decode(rotated) == [CODE]
    rgba = np.dstack([rgb, np.full(gray.shape, 255, np.uint8)])
    assert len(decoder.decode(rgba)) == 2


@pytest.mark.parametrize('text', ['景区门票 SC1:ABC',   # UTF-8, no ECI
    'café', '日本語テキスト'])    # segno: ISO 8859-1; Kanji mode
def test_non_ascii_text(decoder, text):
    assert decoder.decode(frame_with(text, scale=5)) == [text]


@pytest.mark.parametrize('frame', [
    noisy_frame(7, low=0, high=256),                # pure noise
    np.zeros((480, 640), np.uint8),                 # black
    np.full((480, 640, 3), 255, np.uint8),          # white RGB
    np.zeros((480, 640), np.float64),               # wrong dtype
    np.zeros((10, 10), np.uint8),                   # too small
    np.zeros((4, 480, 640), np.uint8),              # wrong shape
    np.zeros((480, 640, 2), np.uint8),
    np.zeros((0, 640), np.uint8),
    np.zeros(640, np.uint8),
    None, 'SC1:not a frame', b'\x89PNG garbage', [[0, 1], [1, 0]],
], ids=lambda f: type(f).__name__ + str(getattr(f, 'shape', '')))
def test_garbage_frames_return_nothing(decoder, frame):
    assert decoder.decode(frame) == []


def test_bad_frames_are_counted(decoder):
    decoder.decode(None)
    decoder.decode(np.zeros(3))
    decoder.decode(noisy_frame(3))
    assert decoder.counters['bad_frames'] == 2
    assert decoder.counters['frames'] == 3
    assert decoder.status()['ok'] is True


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.bool_, np.int16]),
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=64)))
def test_random_arrays_never_raise(array):
    for backend in BACKENDS:
        assert isinstance(make_decoder(backend).decode(array), list)


def test_as_gray_luma():
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[..., 1] = 255
    assert as_gray(rgb)[0, 0] == 150                # 0.587 * 255
    assert as_gray(Image.fromarray(rgb)).shape == (30, 30)


def test_unknown_backend():
    with pytest.raises(ValueError):
        make_decoder('opencv')


# -- camera sources ------------------------------------------------------

def test_image_source_plays_files_and_skips_bad_ones(tmp_path):
    good = tmp_path / 'code.png'
    Image.fromarray(frame_with(CODE)).save(good)
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    source = ImageSource([str(bad), good, np.zeros((480, 640), np.uint8)])
    first = source.read()
    assert first.shape == (480, 640)
    assert make_decoder().decode(first) == [CODE]
    assert source.read().max() == 0
    assert source.read() is None                # no loop: the end
    assert source.counters['bad_images'] == 1
    jpeg = ImageSource([first], loop=True).capture('MAIN-IN', 1)
    assert jpeg.startswith(b'\xff\xd8\xff')


def test_camera_reader_reports_a_code_once_while_in_view():
    frames = [frame_with(CODE)] * 5 + [noisy_frame(2)]
    reader = CameraQRReader(ImageSource(frames), gate='MAIN-IN', lane=2,
        repeat_after=60)
    texts = []
    for _ in range(7):
        texts += reader.poll()
    assert texts == [CODE]


def test_camera_reader_start_calls_on_read():
    reads = []
    reader = create('qr', 'camera', {'gate': 'MAIN-IN', 'lane': 3,
        'direction': 'in', 'backend': 'pyzbar', 'camera': 'images',
        'camera_options': {'paths': [], 'loop': False}})
    reader.source.add(frame_with(CODE))
    with reader.start(lambda *args: reads.append(args)):
        assert wait_for(lambda: reads)
    assert reads == [('MAIN-IN', 3, 'qr', CODE, 'in')]
    assert reader.status()['kind'] == 'qr'


# -- keyboard wedge --------------------------------------------------------

def test_wedge_lines_crlf_and_caps():
    text = ('SC1:AAA\r\n\r\nSC1:BBB\rSC1:CCC\n' + 'X' * 600 + '\n'
        + '\x02SC1:DDD\x03\t\n  SC1:EEE  \nSC1:LAST')
    wedge = KeyboardWedge(io.StringIO(text), max_length=512)
    assert list(wedge) == ['SC1:AAA', 'SC1:BBB', 'SC1:CCC', 'SC1:DDD',
        'SC1:EEE', 'SC1:LAST']
    assert wedge.counters['too_long'] == 1
    assert wedge.read_code() is None


def test_wedge_bytes_and_bad_encoding():
    wedge = KeyboardWedge(io.BytesIO(b'\xff\xfe\r\nSC1:OK\r\n'))
    assert list(wedge) == ['SC1:OK']
    assert wedge.counters['bad_encoding'] == 1


def test_wedge_overlong_line_split_across_reads():
    splitter = LineSplitter(max_length=8)
    assert splitter.feed(b'12345') == []
    assert splitter.feed(b'6789012') == []           # over the cap
    assert splitter.feed(b'345\nok\r') == [b'ok']
    assert splitter.too_long == 1
    assert splitter.feed(b'\nabc') == []             # LF of the CRLF
    assert splitter.flush() == b'abc'


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 100))
def test_wedge_never_returns_overlong_or_raises(data, cap):
    wedge = KeyboardWedge(io.BytesIO(data), max_length=cap)
    for code in wedge:
        assert 0 < len(code.encode()) <= cap
        assert '\r' not in code and '\n' not in code


def test_wedge_reader_on_read(tmp_path):
    path = tmp_path / 'scanner'
    path.write_bytes(b'SC1:ONE\r\nSC1:TWO\r\n')
    reads = []
    reader = WedgeQRReader.from_options(path=str(path), gate='G', lane=1)
    with reader.start(lambda *args: reads.append(args[3])):
        assert wait_for(lambda: len(reads) == 2)
    assert reads == ['SC1:ONE', 'SC1:TWO']
