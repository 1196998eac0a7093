"""Helpers shared by the driver tests."""
import io
import time

import numpy as np


def wait_for(condition, timeout=10.0):
    """Poll ``condition`` until true; False after ``timeout`` (a bound on
    a hang, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def qr_array(text, scale=4, border=4, micro=False):
    """A QR code rendered by segno as a uint8 grayscale array."""
    import segno
    from PIL import Image
    code = segno.make(text, micro=micro, error='m')
    buffer = io.BytesIO()
    code.save(buffer, kind='png', scale=scale, border=border)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert('L'))


def noisy_frame(seed=0, size=(480, 640), low=40, high=215):
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size, dtype=np.uint8)


def paste(frame, image, top, left):
    out = frame.copy()
    out[top:top + image.shape[0], left:left + image.shape[1]] = image
    return out
