"""The demo faces are deterministic and show the attributes their labels claim."""

import numpy as np

from ganlab.data.demo_faces import ATTRIBUTES, FaceLabel, draw_face, sample_labels, write_demo_faces


def test_deterministic_from_seed(tmp_path):
    a = write_demo_faces(tmp_path / "a", 6, seed=1, size=64)
    b = write_demo_faces(tmp_path / "b", 6, seed=1, size=64)
    assert a == b
    for label in a:
        assert (tmp_path / "a" / label.file).read_bytes() == (tmp_path / "b" / label.file).read_bytes()
    assert write_demo_faces(tmp_path / "c", 6, seed=2, size=64) != a


def test_labels_cover_every_value():
    labels, _ = sample_labels(400, seed=0)
    for name, values in ATTRIBUTES.items():
        assert {getattr(label, name) for label in labels} == set(values)


def _face(**attrs):
    base = dict(
        file="x.png",
        hair_length="short",
        hair_color="black",
        mouth="closed",
        eyes="open",
        skin_tone="light",
        face_shape="round",
        background="cream",
    )
    return draw_face(FaceLabel(**{**base, **attrs}), np.random.default_rng(0), 64).astype(int)


def test_attributes_are_visible():
    blue = _face(hair_color="blue")
    assert ((blue[..., 2] > 150) & (blue[..., 0] < 100)).sum() > 100  # blue hair pixels
    assert ((_face()[..., 2] > 150) & (_face()[..., 0] < 100)).sum() < 20
    long_hair, short_hair = _face(hair_length="long"), _face(hair_length="short")

    def dark(img):
        return (img.sum(-1) < 150).sum()

    assert dark(long_hair) > dark(short_hair) + 100  # long black hair covers more of the picture
    assert np.abs(_face(mouth="open") - _face(mouth="closed")).sum() > 0
