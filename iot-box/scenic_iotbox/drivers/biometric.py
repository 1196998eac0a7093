"""Person binding for re-entry tickets: enrol a person, match them later.

Interface (:class:`BiometricMatcher`)::

    enrol(image) -> bytes | None        # template; None: nothing usable
    match(template, image) -> MatchResult   # unpacks as (matched, score)

``image`` is an encoded image (JPEG/PNG bytes, what the box's camera and
handhelds send), a numpy uint8 array (H×W or H×W×3) or a PIL image.
Neither call raises on a bad image or template: the result says why
(``reason``).

* Face: :class:`FaceMatcher` with face_recognition (dlib's models from
  face_recognition_models, nothing downloaded).  The template is the
  128-float face encoding as 1024 bytes (float64, little-endian); the
  score is the Euclidean distance between encodings (lower is closer),
  matched when ``<= threshold`` (0.6 by default).
* Fingerprint: no credible offline matcher exists on the package
  registries; :class:`FingerprintMatcher` is the interface a vendor SDK
  wrapper implements (DRIVERS.md).  There is deliberately no fake one.

Field matching fails some of the time (~10 % for fingerprints), so the
photo is always kept for the staff screen: :func:`make_binding`.
"""

import io
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .base import Device

__all__ = ['BiometricMatcher', 'FaceMatcher', 'FingerprintMatcher',
    'MatchResult', 'Binding', 'make_binding', 'load_image',
    'fingerprint_matcher', 'TEMPLATE_SIZE']

logger = logging.getLogger(__name__)

TEMPLATE_SIZE = 128 * 8
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class MatchResult:
    """``matched``; ``score`` (face: distance, lower is closer; None when
    nothing could be compared); ``reason``: ok, mismatch, no_face,
    bad_image or bad_template.  ``matched, score = result`` works."""
    matched: bool
    score: float | None
    reason: str
    faces: int = 0

    def __iter__(self):
        return iter((self.matched, self.score))


@dataclass(frozen=True)
class Binding:
    """What a first entry keeps: the photo always, a template if any."""
    method: str
    photo_jpeg: bytes = field(repr=False)
    template: bytes | None = field(default=None, repr=False)


def load_image(image, max_side=1024):
    """An RGB uint8 array from bytes / array / PIL image, scaled down to
    at most ``max_side`` pixels (speed); None if it is not an image."""
    try:
        from PIL import Image
        if isinstance(image, (bytes, bytearray, memoryview)):
            if not image or len(image) > MAX_IMAGE_BYTES:
                return None
            image = Image.open(io.BytesIO(bytes(image)))
            if image.size[0] * image.size[1] > MAX_PIXELS:
                return None         # a decompression bomb, not a photo
            image.draft('RGB', (max_side, max_side))    # JPEG: decode small
            image.load()
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or \
                    (image.ndim == 3 and image.shape[2] not in (3, 4)) or \
                    min(image.shape[:2]) < 16:
                return None
            image = Image.fromarray(image)
        elif not isinstance(image, Image.Image):
            return None
        image = image.convert('RGB')
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side))
        if min(image.size) < 16:
            return None
        return np.ascontiguousarray(np.asarray(image))
    except Exception:       # truncated/garbage files, decompression bombs
        return None


def _jpeg(image):
    if isinstance(image, (bytes, bytearray)) and \
            bytes(image[:3]) == b'\xff\xd8\xff':
        return bytes(image)
    rgb = load_image(image, max_side=4096)
    if rgb is None:
        return None
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, 'JPEG', quality=90)
    return buffer.getvalue()


class BiometricMatcher(Device, ABC):
    kind = 'biometric'
    method = None
    ERROR_COUNTERS = ('errors',)

    @abstractmethod
    def enrol(self, image):
        """Template bytes of the person in ``image``, or None."""

    @abstractmethod
    def match(self, template, image):
        """:class:`MatchResult` of ``image`` against ``template``."""


def make_binding(image, matcher=None):
    """The binding of a first entry: the photo (JPEG) always, and the
    template when ``matcher`` finds something to enrol.  None only if
    ``image`` is not an image at all."""
    photo = _jpeg(image)
    if photo is None:
        return None
    template = matcher.enrol(image) if matcher is not None else None
    method = matcher.method if matcher is not None else 'photo'
    return Binding(method, photo, template)


class FaceMatcher(BiometricMatcher):
    """Faces with face_recognition (dlib HOG detector + ResNet encoder).

    ``threshold``: largest distance that still matches (0.6, dlib's
    recommended value; lower is stricter).  ``min_score``: weakest face
    detection kept (HOG detector score).  ``upsample``: HOG passes on an
    upscaled image; 0 finds faces of ~80 px and up (a face at the lane
    camera) in ~50-70 ms, 1 finds ~40 px faces in 4-5 times that.
    ``jitters``: re-samplings per encoding (slower, a bit more stable)."""

    method = 'face'

    def __init__(self, threshold=0.6, upsample=0, jitters=1, max_side=1024,
            min_score=0.3, name='face'):
        super().__init__(name)
        import dlib
        import face_recognition     # loads the dlib models (~1 s)
        self._fr = face_recognition
        self._detector = dlib.get_frontal_face_detector()
        self.threshold = float(threshold)
        self.min_score = float(min_score)
        self.upsample = int(upsample)
        self.jitters = int(jitters)
        self.max_side = int(max_side)
        # dlib's detector and encoder are shared objects: one at a time.
        self._lock = threading.Lock()

    def _faces(self, rgb):
        """Face boxes (top, right, bottom, left), largest first.

        The HOG detector also fires, weakly, on face-like things (a round
        badge on a jacket scores ~0.1 where faces score 1 and more): those
        under ``min_score`` are dropped.  Of the rest, the person at the
        lane is the largest face in view."""
        height, width = rgb.shape[:2]
        found, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        boxes = [(max(r.top(), 0), min(r.right(), width),
            min(r.bottom(), height), max(r.left(), 0))
            for r, score in zip(found, scores) if score >= self.min_score]
        boxes.sort(key=lambda b: (b[2] - b[0]) * (b[1] - b[3]),
            reverse=True)
        return boxes

    def _encodings(self, rgb, largest_only):
        with self._lock:
            boxes = self._faces(rgb)
            if not boxes:
                return []
            boxes = boxes[:1] if largest_only else boxes[:5]
            return self._fr.face_encodings(rgb, boxes, self.jitters)

    def enrol(self, image):
        rgb = load_image(image, self.max_side)
        if rgb is None:
            self.counters.add('bad_images')
            return None
        try:
            encodings = self._encodings(rgb, largest_only=True)
        except Exception:
            self.counters.add('errors')
            logger.exception('Face enrolment failed')
            return None
        if not encodings:
            self.counters.add('no_face')
            return None
        self.counters.add('enrolled')
        return np.asarray(encodings[0], dtype='<f8').tobytes()

    def match(self, template, image):
        if not isinstance(template, (bytes, bytearray)) or \
                len(template) != TEMPLATE_SIZE:
            self.counters.add('bad_templates')
            return MatchResult(False, None, 'bad_template')
        known = np.frombuffer(bytes(template), dtype='<f8')
        # dlib encodings are unit-scale: anything else is not a template
        if not np.all(np.isfinite(known)) or np.abs(known).max() > 4:
            self.counters.add('bad_templates')
            return MatchResult(False, None, 'bad_template')
        rgb = load_image(image, self.max_side)
        if rgb is None:
            self.counters.add('bad_images')
            return MatchResult(False, None, 'bad_image')
        try:
            encodings = self._encodings(rgb, largest_only=False)
        except Exception:
            self.counters.add('errors')
            logger.exception('Face match failed')
            return MatchResult(False, None, 'bad_image')
        if not encodings:
            self.counters.add('no_face')
            return MatchResult(False, None, 'no_face')
        distance = float(min(np.linalg.norm(np.asarray(e) - known)
            for e in encodings))
        matched = distance <= self.threshold
        self.counters.add('matched' if matched else 'mismatched')
        return MatchResult(matched, round(distance, 4),
            'ok' if matched else 'mismatch', len(encodings))


class FingerprintMatcher(BiometricMatcher):
    """Interface for a fingerprint reader's vendor SDK.

    Fingerprint modules (e.g. those sold with gate turnstiles) extract and
    match templates in their own library; a wrapper (ctypes over the
    vendor's .so, see DRIVERS.md) implements ``enrol`` (image or live
    capture → the vendor's template bytes) and ``match`` (→ MatchResult
    with the vendor's score).  No matcher of ours stands in for it."""

    method = 'fingerprint'


def fingerprint_matcher(**options):
    """Registry entry ``biometric``/``fingerprint``: there is no built-in
    one; a vendor package registers its own under another name."""
    from . import DriverUnavailable
    raise DriverUnavailable('No fingerprint matcher is built in: it needs '
        'the reader vendor\'s SDK (see DRIVERS.md, "Fingerprint"). Register '
        'the vendor wrapper with scenic_iotbox.drivers.register().')
