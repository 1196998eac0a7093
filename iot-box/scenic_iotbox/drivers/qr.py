"""QR codes: camera-frame decoders, camera sources, keyboard-wedge scanners.

* :class:`QRDecoder` — ``decode(frame) -> [text, …]`` on a numpy frame
  (grayscale ``H×W`` or colour ``H×W×3/4``, uint8).  Backends: zxing-cpp
  (default) and pyzbar (needs Debian's libzbar0).  A frame that is not an
  image (wrong shape or type, empty, huge) is counted in ``bad_frames`` and
  yields ``[]``; so does any error inside the decoder.
* :class:`CameraSource` — ``read() -> frame | None``; :class:`ImageSource`
  plays image files or arrays (tests, demo).
* :class:`KeyboardWedge` — scanners that "type" the code then Enter: lines
  from a text or byte stream, CR/LF/CRLF stripped, length-capped.
* :class:`CameraQRReader` / :class:`WedgeQRReader` — the box's ``qr``
  readers: they call ``on_read(gate, lane, 'qr', text, direction)``.
"""

import io
import logging
import os
import re
import sys
import time
from abc import ABC, abstractmethod

import numpy as np

from .base import Device, ScanReader

__all__ = ['QRDecoder', 'ZxingDecoder', 'PyzbarDecoder', 'make_decoder',
    'as_gray', 'CameraSource', 'ImageSource', 'KeyboardWedge',
    'LineSplitter', 'CameraQRReader', 'WedgeQRReader']

logger = logging.getLogger(__name__)

MIN_SIDE = 21                   # a version-1 QR code is 21 modules wide
MAX_PIXELS = 4096 * 4096        # more than any gate camera sends
DEFAULT_MAX_LENGTH = 512        # = scenic_common.ticketcode.MAX_CODE_LENGTH


def as_gray(frame):
    """A C-contiguous uint8 ``H×W`` array, or None if ``frame`` is not a
    usable image."""
    if not isinstance(frame, np.ndarray):
        try:                                # a PIL image
            from PIL import Image
            if isinstance(frame, Image.Image):
                return np.asarray(frame.convert('L'))
        except Exception:
            pass
        return None
    if frame.dtype == np.bool_:
        frame = frame.astype(np.uint8) * 255
    if frame.dtype != np.uint8:
        return None
    if frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        if frame.shape[2] == 1:
            frame = frame[:, :, 0]
        else:                               # ITU-R BT.601 luma
            rgb = frame[:, :, :3].astype(np.uint32)
            frame = ((rgb[:, :, 0] * 299 + rgb[:, :, 1] * 587
                + rgb[:, :, 2] * 114 + 500) // 1000).astype(np.uint8)
    if frame.ndim != 2 or min(frame.shape) < MIN_SIDE \
            or frame.size > MAX_PIXELS:
        return None
    return np.ascontiguousarray(frame)


class QRDecoder(Device, ABC):
    """``decode(frame) -> list[str]``: the texts of the codes in a frame,
    each once, in the order found.  Never raises on bad frames."""

    kind = 'qr_decoder'
    ERROR_COUNTERS = ('decoder_errors',)

    def decode(self, frame):
        self.counters.add('frames')
        gray = as_gray(frame)
        if gray is None:
            self.counters.add('bad_frames')
            return []
        try:
            texts = self._decode(gray)
        except Exception:
            self.counters.add('decoder_errors')
            logger.exception('%s: decoder failed', self.name)
            return []
        found = list(dict.fromkeys(t for t in texts if t))
        self.counters.add('decoded', len(found))
        return found

    @abstractmethod
    def _decode(self, gray):
        """Texts from a valid uint8 grayscale frame."""


class ZxingDecoder(QRDecoder):
    """zxing-cpp (the default: fast, robust to blur and rotation).

    ``formats``: zxing-cpp format names, default ``["QRCode"]``."""

    def __init__(self, formats=('QRCode',), name='zxing'):
        super().__init__(name)
        import zxingcpp
        self._zxing = zxingcpp
        self._formats = None
        for fmt in formats:
            value = getattr(zxingcpp.BarcodeFormat, fmt)
            self._formats = value if self._formats is None else \
                self._formats | value

    def _decode(self, gray):
        results = self._zxing.read_barcodes(gray, formats=self._formats)
        return [r.text for r in results if getattr(r, 'valid', True)]


class PyzbarDecoder(QRDecoder):
    """ZBar through pyzbar (needs the libzbar0 Debian package)."""

    def __init__(self, name='pyzbar'):
        super().__init__(name)
        try:
            from pyzbar import pyzbar
        except ImportError as error:       # the library, not the wheel
            from . import DriverUnavailable
            raise DriverUnavailable('pyzbar needs the zbar library '
                f'(apt-get install libzbar0): {error}') from error
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def _decode(self, gray):
        texts = []
        for result in self._pyzbar.decode(gray, symbols=self._symbols):
            try:
                texts.append(_undo_sjis_guess(result.data.decode('utf-8')))
            except UnicodeDecodeError:
                self.counters.add('bad_text')
        return texts


def _undo_sjis_guess(text):
    """ZBar reads byte-mode QR data without an ECI as Shift-JIS when it
    can, which garbles UTF-8 text (what phones and segno write: 景区 comes
    out as 譎ｯ蛹ｺ).  If the text turns back into valid UTF-8 bytes through
    Shift-JIS, that is what the code held."""
    if text.isascii():
        return text
    try:
        return text.encode('cp932').decode('utf-8')
    except UnicodeError:
        return text


_DECODERS = {'zxing': ZxingDecoder, 'pyzbar': PyzbarDecoder}


def make_decoder(backend='zxing', **options):
    """A decoder by backend name (``zxing`` or ``pyzbar``)."""
    try:
        return _DECODERS[backend](**options)
    except KeyError:
        raise ValueError(f'Unknown QR backend {backend!r} (zxing, pyzbar)') \
            from None


# -- cameras ----------------------------------------------------------

class CameraSource(Device, ABC):
    """Frames from a camera: ``read()`` returns the next frame (numpy
    uint8, H×W or H×W×3) or None when there is none (yet)."""

    kind = 'camera'

    @abstractmethod
    def read(self):
        """The next frame, or None."""

    def capture(self, gate=None, lane=None):
        """A JPEG of the current frame: the box's photo for bindings."""
        frame = self.read()
        if frame is None:
            return None
        from PIL import Image
        buffer = io.BytesIO()
        Image.fromarray(frame).convert('RGB').save(buffer, 'JPEG',
            quality=90)
        return buffer.getvalue()

    def close(self):
        pass


class ImageSource(CameraSource):
    """Plays images (paths, bytes of an image file, arrays or PIL images)
    as camera frames; with ``loop`` it starts over at the end.  An image
    that cannot be read is counted in ``bad_images`` and skipped."""

    ERROR_COUNTERS = ('bad_images',)

    def __init__(self, images=(), loop=False, name='images'):
        super().__init__(name)
        self._images = list(images)
        self._loop = loop
        self._index = 0

    @classmethod
    def from_options(cls, paths=(), loop=True, name='images'):
        return cls(list(paths), loop=loop, name=name)

    def add(self, image):
        self._images.append(image)

    def read(self):
        for _ in range(len(self._images)):
            if self._index >= len(self._images):
                if not self._loop:
                    return None
                self._index = 0
            image = self._images[self._index]
            self._index += 1
            frame = self._load(image)
            if frame is not None:
                return frame
            self.counters.add('bad_images')
        return None

    @staticmethod
    def _load(image):
        if isinstance(image, np.ndarray):
            return image
        try:
            from PIL import Image
            if isinstance(image, (bytes, bytearray)):
                image = Image.open(io.BytesIO(image))
            elif isinstance(image, (str, os.PathLike)):
                image = Image.open(image)
            if isinstance(image, Image.Image):
                if image.mode not in ('L', 'RGB'):
                    image = image.convert('RGB')
                return np.asarray(image)
        except Exception:
            return None
        return None


# -- keyboard wedge ---------------------------------------------------

_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


class LineSplitter:
    """Bytes in, complete lines out.  CR, LF and CRLF end a line (scanners
    are set to either).  A line longer than ``max_length`` is dropped
    whole (a cut code is a wrong code) and counted in ``too_long``."""

    def __init__(self, max_length=DEFAULT_MAX_LENGTH):
        self.max_length = max_length
        self.too_long = 0
        self._buffer = bytearray()
        self._skipping = False      # inside an overlong line
        self._after_cr = False

    def feed(self, data):
        lines = []
        for byte in data:
            if byte == 0x0A and self._after_cr:   # LF of a CRLF
                self._after_cr = False
                continue
            self._after_cr = byte == 0x0D
            if byte in (0x0A, 0x0D):
                if not self._skipping:
                    lines.append(bytes(self._buffer))
                self._buffer.clear()
                self._skipping = False
            elif not self._skipping:
                self._buffer.append(byte)
                if len(self._buffer) > self.max_length:
                    self.too_long += 1
                    self._skipping = True
                    self._buffer.clear()
        return lines

    def flush(self):
        """The last line at end of input, if it had no line end."""
        line = None if self._skipping or not self._buffer else \
            bytes(self._buffer)
        self._buffer.clear()
        self._skipping = False
        return line


class KeyboardWedge(Device):
    """Codes typed by a scanner, one per line, from ``stream``.

    ``stream``: a binary or text file-like object (stdin, a pipe, a tty,
    ``io.StringIO``…).  ``read_code()`` returns the next code (CR/LF and
    surrounding spaces stripped, control characters removed), or None at
    the end of the stream.  Empty lines, lines over ``max_length`` bytes
    and undecodable lines are counted and skipped."""

    kind = 'qr_wedge'
    ERROR_COUNTERS = ('too_long', 'bad_encoding')

    def __init__(self, stream, max_length=DEFAULT_MAX_LENGTH,
            encoding='utf-8', name='wedge'):
        super().__init__(name)
        self._stream = getattr(stream, 'buffer', stream)   # text → bytes
        self._encoding = encoding
        self._splitter = LineSplitter(max_length)
        self._lines = []
        self._eof = False

    def _chunk(self):
        stream = self._stream
        read1 = getattr(stream, 'read1', None)
        data = read1(4096) if read1 is not None else stream.read(4096)
        if isinstance(data, str):
            data = data.encode(self._encoding, errors='replace')
        return data

    def read_code(self):
        while True:
            while self._lines:
                code = self._clean(self._lines.pop(0))
                if code:
                    return code
            if self._eof:
                return None
            data = self._chunk()
            before = self._splitter.too_long
            if not data:
                self._eof = True
                last = self._splitter.flush()
                self._lines = [last] if last is not None else []
            else:
                self._lines = self._splitter.feed(data)
            self.counters.add('too_long', self._splitter.too_long - before)

    def _clean(self, line):
        try:
            text = line.decode(self._encoding)
        except UnicodeDecodeError:
            self.counters.add('bad_encoding')
            return None
        text = _CONTROL.sub('', text).strip()
        if not text:
            self.counters.add('empty_lines')
        return text or None

    def __iter__(self):
        while (code := self.read_code()) is not None:
            yield code


# -- the box's QR readers ----------------------------------------------

class CameraQRReader(ScanReader):
    """A camera at a lane: decodes its frames and reports each code.

    The same code stays in view over many frames: it is reported again
    only after ``repeat_after`` seconds without it."""

    kind = 'qr'
    medium = 'qr'

    def __init__(self, source, decoder=None, gate=None, lane=1,
            direction=None, interval=0.05, repeat_after=3.0, name='camera'):
        super().__init__(gate, lane, direction, name)
        self.source = source
        self.decoder = self.inner = decoder or ZxingDecoder()
        self.interval = interval
        self.repeat_after = repeat_after
        self._last_seen = {}

    @classmethod
    def from_options(cls, gate=None, lane=1, direction=None,
            backend='zxing', camera='images', camera_options=None,
            interval=0.05, repeat_after=3.0, name='camera'):
        from . import create
        source = create('camera', camera, dict(camera_options or {}))
        return cls(source, make_decoder(backend), gate, lane, direction,
            interval, repeat_after, name)

    def poll(self, now=None):
        frame = self.source.read()
        if frame is None:
            time.sleep(self.interval)
            return []
        now = time.monotonic() if now is None else now
        fresh = []
        for text in self.decoder.decode(frame):
            last = self._last_seen.get(text)
            if last is None or now - last >= self.repeat_after:
                fresh.append(text)
            self._last_seen[text] = now
        # forget codes long gone (bounded memory)
        for text, last in list(self._last_seen.items()):
            if now - last >= self.repeat_after:
                del self._last_seen[text]
        return fresh


    def close(self):
        super().close()
        self.source.close()


class WedgeQRReader(ScanReader):
    """A keyboard-wedge scanner (or any line-per-code stream) at a lane.

    ``path``: ``-`` for stdin, or a file/tty/pipe path."""

    kind = 'qr'
    medium = 'qr'

    def __init__(self, stream, gate=None, lane=1, direction=None,
            max_length=DEFAULT_MAX_LENGTH, name='wedge'):
        super().__init__(gate, lane, direction, name)
        self.wedge = self.inner = KeyboardWedge(stream, max_length)
        self._done = False

    @classmethod
    def from_options(cls, path='-', gate=None, lane=1, direction=None,
            max_length=DEFAULT_MAX_LENGTH, name='wedge'):
        stream = sys.stdin if path == '-' else open(path, 'rb', buffering=0)
        return cls(stream, gate, lane, direction, max_length, name)

    def poll(self):
        if self._done:
            time.sleep(0.5)
            return []
        code = self.wedge.read_code()
        if code is None:
            self._done = True       # end of input: nothing more to read
            return []
        return [code]

