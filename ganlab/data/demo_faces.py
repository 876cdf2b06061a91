"""Procedural "toy faces": the built-in demo data set, drawn with OpenCV.

The attributes are the lecture's own examples of what latent dimensions come to mean
(longer hair, blue hair, open mouth), plus nuisance variation (skin tone, background,
shirt, pose) so that a GAN has something real to learn. Deterministic from a seed.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ganlab.io.atomic import atomic_path

# Every categorical attribute with its values; the classifier of later stages reads this.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_length": ("short", "long"),
    "hair_color": ("black", "brown", "blond", "red", "blue"),
    "mouth": ("closed", "smile", "open"),
    "eyes": ("open", "closed"),
    "skin_tone": ("light", "medium", "dark"),
    "face_shape": ("round", "oval"),
    "background": ("cream", "sky", "mint", "rose"),
}

_HAIR_RGB = {
    "black": (30, 28, 32),
    "brown": (110, 70, 40),
    "blond": (225, 190, 100),
    "red": (180, 60, 30),
    "blue": (40, 90, 220),
}
_SKIN_RGB = {"light": (245, 215, 190), "medium": (205, 160, 120), "dark": (125, 85, 60)}
_BG_RGB = {"cream": (240, 232, 210), "sky": (170, 205, 235), "mint": (180, 225, 195), "rose": (235, 190, 200)}
_RENDER = 256  # drawn at 256 px and area-downsampled: anti-aliased edges at every output size


@dataclass(frozen=True)
class FaceLabel:
    file: str
    hair_length: str
    hair_color: str
    mouth: str
    eyes: str
    skin_tone: str
    face_shape: str
    background: str


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def draw_face(label: FaceLabel, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One RGB uint8 image (size, size, 3) showing the attributes in ``label``."""
    s = _RENDER
    img = np.empty((s, s, 3), np.uint8)
    img[:] = _jitter(_BG_RGB[label.background], rng, 12)
    hair = _jitter(_HAIR_RGB[label.hair_color], rng, 15)
    skin = _jitter(_SKIN_RGB[label.skin_tone], rng, 12)
    shirt = tuple(int(c) for c in rng.integers(40, 220, 3))
    aa = cv2.LINE_AA

    cx, cy = s // 2, int(s * 0.47)
    fw = int(s * (0.25 if label.face_shape == "round" else 0.215))
    fh = int(s * (0.27 if label.face_shape == "round" else 0.31))

    cv2.ellipse(img, (cx, s + int(s * 0.08)), (int(s * 0.42), int(s * 0.3)), 0, 0, 360, shirt, -1, aa)
    if label.hair_length == "long":  # hair behind the head, falling to the shoulders
        cv2.ellipse(img, (cx, cy + int(fh * 0.35)), (int(fw * 1.35), int(fh * 1.25)), 0, 0, 360, hair, -1, aa)
        cv2.rectangle(
            img, (cx - int(fw * 1.35), cy + int(fh * 0.35)), (cx + int(fw * 1.35), cy + int(fh * 1.45)), hair, -1, aa
        )
    cv2.rectangle(img, (cx - fw // 3, cy + int(fh * 0.8)), (cx + fw // 3, cy + int(fh * 1.3)), skin, -1, aa)  # neck
    cv2.ellipse(img, (cx, cy), (fw, fh), 0, 0, 360, skin, -1, aa)
    # hair on top of the head: a cap over the forehead
    cv2.ellipse(img, (cx, cy - int(fh * 0.25)), (int(fw * 1.06), int(fh * 0.85)), 0, 180, 360, hair, -1, aa)

    ey, ex, er = cy - int(fh * 0.05), int(fw * 0.42), max(3, int(fw * 0.17))
    for sx in (-1, 1):
        c = (cx + sx * ex, ey)
        cv2.line(
            img, (c[0] - er, ey - int(er * 1.7)), (c[0] + er, ey - int(er * 1.9)), hair, max(2, er // 3), aa
        )  # brow
        if label.eyes == "open":
            cv2.ellipse(img, c, (er, int(er * 0.75)), 0, 0, 360, (250, 250, 250), -1, aa)
            cv2.circle(img, c, max(2, int(er * 0.5)), (35, 30, 40), -1, aa)
        else:
            cv2.ellipse(img, c, (er, int(er * 0.5)), 0, 0, 180, (40, 30, 30), max(2, er // 3), aa)
    cv2.line(
        img,
        (cx, cy + int(fh * 0.05)),
        (cx - int(fw * 0.08), cy + int(fh * 0.28)),
        tuple(int(c * 0.8) for c in skin),
        3,
        aa,
    )

    my, mw = cy + int(fh * 0.52), int(fw * 0.42)
    lips = (150, 50, 60)
    if label.mouth == "closed":
        cv2.line(img, (cx - mw, my), (cx + mw, my), lips, max(3, er // 2), aa)
    elif label.mouth == "smile":
        cv2.ellipse(img, (cx, my - int(fh * 0.08)), (mw, int(fh * 0.14)), 0, 15, 165, lips, max(3, er // 2), aa)
    else:
        cv2.ellipse(img, (cx, my), (int(mw * 0.8), int(fh * 0.15)), 0, 0, 360, (70, 15, 25), -1, aa)
        cv2.ellipse(img, (cx, my + int(fh * 0.07)), (int(mw * 0.45), int(fh * 0.06)), 0, 0, 360, (210, 90, 100), -1, aa)

    # small pose and scale jitter of the whole picture; the flat background fills the border
    angle, scale = rng.uniform(-8, 8), rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.05, 0.05, 2) * s
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def sample_labels(count: int, seed: int) -> tuple[list[FaceLabel], np.random.Generator]:
    rng = np.random.default_rng(seed)
    labels = [
        FaceLabel(file=f"face_{i:05d}.png", **{k: str(rng.choice(v)) for k, v in ATTRIBUTES.items()})
        for i in range(count)
    ]
    return labels, rng


def write_demo_faces(out_dir: Path, count: int, seed: int, size: int = 128) -> list[FaceLabel]:
    """Write ``count`` PNG faces and ``labels.csv`` (one row per image) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, rng = sample_labels(count, seed)
    for label in labels:
        with atomic_path(out_dir / label.file) as tmp:
            Image.fromarray(draw_face(label, rng, size)).save(tmp, format="PNG")
    with atomic_path(out_dir / "labels.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(labels[0])))
        writer.writeheader()
        writer.writerows(asdict(label) for label in labels)
    return labels


def read_labels(folder: Path, files: list[str]) -> dict[str, np.ndarray]:
    """Class indices per attribute for ``files`` (the dataset's row order), from ``labels.csv``."""
    with open(folder / "labels.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    return {a: np.array([values.index(rows[fn][a]) for fn in files]) for a, values in ATTRIBUTES.items()}
