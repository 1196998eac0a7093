"""Thermal ticket and receipt printers (ESC/POS) at windows and kiosks.

A print job is a small JSON-able dict the ERP composes (``kind`` 'ticket'
or 'receipt' and the lines to print); the driver renders it to one 1-bit
image (text, and the signed code as a QR for tickets) and sends that image
as an ESC/POS raster (``GS v 0``) through python-escpos.  Rendering to an
image rather than sending the printer's own QR command keeps the QR the
visitor gets identical on every printer model, and lets the tests and the
demo decode exactly what was printed: :func:`raster_images` turns the
ESC/POS bytes back into the image.

Devices: ``file`` writes the ESC/POS stream to a file or device node
(``/dev/usb/lp0``) and, with ``png_dir``, each job's image as a PNG (the
demo's simulated printer); ``memory`` keeps the bytes and images (tests).
Paper and cover state: a real printer answers ``DLE EOT`` status; the file
and memory devices report the ``paper`` option (``ok``/``low``/``out``)
so the kiosk's health path is testable.

Personal information: jobs carry the masked holder only, never the number.
"""

import io
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from .base import Device

__all__ = ['TicketPrinter', 'render_job', 'raster_images', 'PrintError']

logger = logging.getLogger(__name__)

WIDTH = 384                 # dots: 58 mm paper at 203 dpi (80 mm: 576)
# Chinese (the fallback font has CJK glyphs only) and Latin/digits.
CJK_FONTS = (
    '/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc',
    '/usr/share/fonts/truetype/wqy/wqy-microhei.ttc',
    '/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc',
    '/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf',
)
LATIN_FONTS = (
    '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
    '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf',
)
PAPER_STATES = ('ok', 'low', 'out')
JOB_KINDS = ('ticket', 'receipt')


class PrintError(ValueError):
    """A job the printer cannot print (bad job, no paper)."""


def _font(size, candidates):
    from PIL import ImageFont
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


class _Fonts:
    """A Latin and a CJK font of one size: each run of text is drawn with
    the one that has its glyphs (``font`` overrides the CJK one)."""

    def __init__(self, size, path=None):
        self.latin = _font(size, LATIN_FONTS)
        self.cjk = _font(size, ((path,) if path else ()) + CJK_FONTS)

    def draw(self, draw, xy, text):
        x, y = xy
        run, latin = '', None
        for ch in text + '\0':
            is_latin = ord(ch) < 0x2E80 and ch != '\0'
            if ch == '\0' or (run and is_latin != latin):
                font = self.latin if latin else self.cjk
                draw.text((x, y), run, font=font, fill=0)
                x += draw.textlength(run, font=font)
                run = ''
            if ch != '\0':
                run += ch
                latin = is_latin


def _qr_image(text, box=4):
    import qrcode
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=box, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.make_image(fill_color='black', back_color='white').get_image()


def _check_job(job):
    if not isinstance(job, dict) or job.get('kind') not in JOB_KINDS:
        raise PrintError("A print job is a dict with kind 'ticket' or "
            "'receipt'.")
    lines = job.get('lines', [])
    if not isinstance(lines, list) or not all(
            isinstance(l, str) for l in lines):
        raise PrintError('lines must be a list of strings.')
    if job['kind'] == 'ticket' and not isinstance(job.get('code'), str):
        raise PrintError('A ticket job needs its signed code.')
    if any(str(job.get(k) or '').isdigit() and len(str(job[k])) >= 15
            for k in ('holder',)):
        raise PrintError('Print the masked holder, never the ID number.')


def render_job(job, width=WIDTH, font_path=None):
    """The job as a 1-bit PIL image ``width`` dots wide."""
    from PIL import Image, ImageDraw
    _check_job(job)
    title = _Fonts(30, font_path)
    body = _Fonts(22, font_path)
    rows = []       # (kind, value)
    if job.get('title'):
        rows.append(('title', job['title']))
    rows.extend(('text', line) for line in job.get('lines', []))
    qr = None
    if job['kind'] == 'ticket':
        qr = _qr_image(job['code'])
        if qr.width > width:
            qr = _qr_image(job['code'], box=max(1, 4 * width // qr.width))
    footer = [('text', line) for line in job.get('footer', [])]
    height = 16
    for kind, _ in rows + footer:
        height += 40 if kind == 'title' else 30
    if qr is not None:
        height += qr.height + 8
    height += 24
    image = Image.new('1', (width, height), 1)
    draw = ImageDraw.Draw(image)
    y = 12

    def text(kind, value):
        nonlocal y
        fonts = title if kind == 'title' else body
        fonts.draw(draw, (8, y), value)
        y += 40 if kind == 'title' else 30
    for kind, value in rows:
        text(kind, value)
    if qr is not None:
        image.paste(qr.convert('1'), ((width - qr.width) // 2, y + 4))
        y += qr.height + 8
    for kind, value in footer:
        text(kind, value)
    return image


def raster_images(data):
    """The images of the ``GS v 0`` raster commands in an ESC/POS stream,
    consecutive bands joined (python-escpos splits tall images)."""
    from PIL import Image
    images, bands = [], []
    i = 0
    marker = b'\x1dv0'
    while True:
        start = data.find(marker, i)
        if start < 0:
            break
        header = data[start + 4:start + 8]
        if len(header) < 4:
            break
        width_bytes = header[0] + header[1] * 256
        height = header[2] + header[3] * 256
        size = width_bytes * height
        body = data[start + 8:start + 8 + size]
        if len(body) < size:
            break
        # ESC/POS: bit set = black dot; PIL mode '1' from raw: 1 = white.
        band = Image.frombytes('1', (width_bytes * 8, height),
            bytes(b ^ 0xFF for b in body))
        end = start + 8 + size
        bands.append(band)
        # A band followed directly by another band is the same image.
        if not data.startswith(marker, end):
            images.append(_stack(bands))
            bands = []
        i = end
    if bands:
        images.append(_stack(bands))
    return images


def _stack(bands):
    from PIL import Image
    if len(bands) == 1:
        return bands[0]
    image = Image.new('1', (bands[0].width, sum(b.height for b in bands)), 1)
    y = 0
    for band in bands:
        image.paste(band, (0, y))
        y += band.height
    return image


class TicketPrinter(Device):
    """``print_job(job) -> {"job", "bytes", "png"}`` on an ESC/POS device.

    Registry names ``printer``/``file`` and ``printer``/``memory``.  One
    job at a time (a lock): tickets of two sales never interleave."""

    kind = 'printer'
    ERROR_COUNTERS = ('print_errors', 'paper_out')

    def __init__(self, device='memory', path=None, png_dir=None,
            width=WIDTH, paper='ok', font=None, name=None):
        super().__init__(name or device)
        if device not in ('memory', 'file'):
            raise ValueError(f"printer device must be 'memory' or 'file', "
                f'not {device!r}')
        if device == 'file' and not path:
            raise ValueError('printer: the file device needs a path')
        if paper not in PAPER_STATES:
            raise ValueError(f'printer paper must be one of {PAPER_STATES}')
        self.device = device
        self.path = path
        self.png_dir = Path(png_dir) if png_dir else None
        self.width = int(width)
        self.paper = paper
        self.font = font
        self.jobs = []          # memory device: (job, bytes, image)
        self.last_error = None  # reported in the heartbeat (kiosk health)
        self._lock = threading.Lock()
        self._seq = 0

    @classmethod
    def file(cls, path=None, png_dir=None, **options):
        return cls('file', path=path, png_dir=png_dir, **options)

    @classmethod
    def memory(cls, **options):
        return cls('memory', **options)

    def escpos_bytes(self, image, cut=True):
        from escpos.printer import Dummy
        printer = Dummy()
        printer.hw('INIT')      # ESC @: no mode left over from another job
        printer.image(image, impl='bitImageRaster', center=False)
        if cut:
            printer.cut()
        return printer.output

    def print_job(self, job):
        if self.paper == 'out':
            self.counters.add('paper_out')
            self.last_error = 'The printer is out of paper.'
            raise PrintError(self.last_error)
        try:
            image = render_job(job, self.width, self.font)
        except PrintError as error:
            self.counters.add('print_errors')
            self.last_error = str(error)[:200]
            raise
        data = self.escpos_bytes(image)
        with self._lock:
            self._seq += 1
            number = (f'{int(time.time())}-{os.getpid()}-{self._seq}-'
                f'{secrets.token_hex(3)}')
            png = None
            if self.device == 'file':
                with open(self.path, 'ab') as stream:
                    stream.write(data)
            else:
                self.jobs.append((job, data, image))
            if self.png_dir is not None:
                self.png_dir.mkdir(parents=True, exist_ok=True)
                png = self.png_dir / f'{job["kind"]}-{number}.png'
                image.save(png)
        self.counters.add('jobs')
        return {'job': number, 'bytes': len(data),
            'png': str(png) if png else None}

    def status(self):
        result = super().status()
        result['paper'] = self.paper
        result['ok'] = result['ok'] and self.paper != 'out'
        if self.last_error:
            result['last_error'] = self.last_error
        return result

    def png_bytes(self, index=-1):
        "The memory device's image of a job as PNG (tests, the demo page)."
        buffer = io.BytesIO()
        self.jobs[index][2].save(buffer, 'PNG')
        return buffer.getvalue()
