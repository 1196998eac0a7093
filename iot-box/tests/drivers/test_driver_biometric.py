"""Person binding: face enrolment/matching with face_recognition."""
import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from scenic_iotbox.drivers import DriverUnavailable, create
from scenic_iotbox.drivers.biometric import (TEMPLATE_SIZE,
    FingerprintMatcher, MatchResult, load_image, make_binding)

pytest.importorskip('face_recognition', reason='the face extra is not '
    'installed')
skimage_data = pytest.importorskip('skimage.data', reason='scikit-image '
    '(test data: a real portrait) is not installed')


@pytest.fixture(scope='module')
def face():
    return create('biometric', 'face')


@pytest.fixture(scope='module')
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope='module')
def template(face, astronaut):
    return face.enrol(astronaut)


def jpeg(image, quality=85):
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', quality=quality)
    return buffer.getvalue()


def altered(astronaut):
    """The same person, cropped, brighter, JPEG-compressed."""
    image = Image.fromarray(astronaut).crop((20, 10, 500, 480))
    return jpeg(ImageEnhance.Brightness(image).enhance(1.3))


def test_enrol_gives_a_128_float_template(template):
    assert isinstance(template, bytes) and len(template) == TEMPLATE_SIZE
    vector = np.frombuffer(template, '<f8')
    assert vector.shape == (128,) and np.all(np.isfinite(vector))


def test_same_face_matches(face, template, astronaut):
    result = face.match(template, altered(astronaut))
    matched, score = result
    assert matched is True and result.reason == 'ok'
    assert 0 <= score <= 0.6


def test_a_picture_without_a_face(face, template):
    camera = skimage_data.camera()                  # a cameraman, far away
    result = face.match(template, camera)
    assert (result.matched, result.score, result.reason) == \
        (False, None, 'no_face')
    assert face.enrol(camera) is None
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3),
        dtype=np.uint8)
    assert face.match(template, noise).reason == 'no_face'


def test_a_different_person_does_not_match(face, template, astronaut):
    # Another person's template: the astronaut's, moved 0.8 away in the
    # encoding space (real dlib encodings of different people are ~0.8+).
    vector = np.frombuffer(template, '<f8').copy()
    direction = np.random.default_rng(1).normal(size=128)
    vector += 0.8 * direction / np.linalg.norm(direction)
    result = face.match(vector.astype('<f8').tobytes(), astronaut)
    assert result.matched is False and result.reason == 'mismatch'
    assert result.score > 0.6


def test_threshold_is_configurable(template, astronaut):
    strict = create('biometric', 'face', {'threshold': 0.05})
    result = strict.match(template, altered(astronaut))
    assert result.matched is False and 0.05 < result.score


@pytest.mark.parametrize('image', [b'', b'not an image', b'\xff\xd8\xff',
    np.zeros((5, 5), np.uint8), np.zeros((100, 100), np.float32), None,
    'astronaut.png'])
def test_garbage_images_never_raise(face, template, image):
    assert face.match(template, image) == MatchResult(False, None,
        'bad_image')
    assert face.enrol(image) is None


@pytest.mark.parametrize('bad', [b'', b'x' * 1024, b'\x00' * 100, None,
    np.full(128, np.nan).tobytes()])
def test_bad_templates(face, astronaut, bad):
    assert face.match(bad, astronaut).reason == 'bad_template'


def test_enrol_takes_the_largest_face(face, astronaut):
    # two astronauts, one small: the template is the large one's
    canvas = Image.new('RGB', (900, 600), 'gray')
    canvas.paste(Image.fromarray(astronaut), (0, 0))
    canvas.paste(Image.fromarray(astronaut).resize((300, 300)), (560, 50))
    template = face.enrol(jpeg(canvas))
    single = face.enrol(astronaut)
    distance = np.linalg.norm(np.frombuffer(template, '<f8')
        - np.frombuffer(single, '<f8'))
    assert distance < 0.3
    # upsampled, the detector also sees the round mission patch on the
    # suit as a (weak) face; it is dropped by min_score
    wide = create('biometric', 'face', {'upsample': 1})
    assert wide.match(single, astronaut).faces == 1


def test_binding_keeps_the_photo_even_without_a_face(face, astronaut):
    binding = make_binding(altered(astronaut), face)
    assert binding.method == 'face' and len(binding.template) == \
        TEMPLATE_SIZE
    assert binding.photo_jpeg.startswith(b'\xff\xd8\xff')
    no_face = make_binding(skimage_data.camera(), face)
    assert no_face.template is None
    assert Image.open(io.BytesIO(no_face.photo_jpeg)).size == (512, 512)
    assert make_binding(b'garbage', face) is None
    assert make_binding(astronaut).method == 'photo'


def test_load_image_limits():
    assert load_image(np.zeros((2000, 3000, 3), np.uint8)).shape == \
        (683, 1024, 3)
    huge = io.BytesIO()
    Image.new('L', (9000, 9000)).save(huge, 'PNG')
    assert load_image(huge.getvalue()) is None       # 81 Mpx: refused


def test_fingerprint_needs_a_vendor_sdk():
    with pytest.raises(DriverUnavailable, match='vendor'):
        create('biometric', 'fingerprint')
    with pytest.raises(TypeError):
        FingerprintMatcher()                          # interface only


def test_core_validator_reads_the_result(face, template, astronaut):
    # the box core accepts (ok, score) pairs or objects with matched/score
    result = face.match(template, astronaut)
    assert result.matched and result.score == pytest.approx(0, abs=1e-6)
    ok, score = result
    assert (ok, score) == (result.matched, result.score)
