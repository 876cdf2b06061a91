"""The catalogue of bad inputs for `prepare`: each is kept with a note, skipped with a reason,
or a clear one-line error; none is a traceback."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data import folder
from ganlab.errors import UserError
from ganlab.params import parse_params
from stages import prepare


def png(path: Path, size=(40, 30), color=(200, 30, 30), mode="RGB") -> Path:
    Image.new(mode, size, color).save(path)
    return path


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "good.png")
    (src / "zero.png").write_bytes(b"")
    jpg = src / "truncated.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpg, quality=95)
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size * 6 // 10])
    big = png(src / "big.png", (300, 300), (0, 0, 255))
    (src / "truncated.png").write_bytes(big.read_bytes()[:120])
    big.unlink()
    (src / "text.jpg").write_text("hello, I am not a JPEG")
    png(src / "one_pixel.png", (1, 1), (0, 255, 0))
    png(src / "wide.png", (4000, 10), (0, 0, 255))
    png(src / "bomb.png", (3000, 3000), (5, 5, 5))
    Image.fromarray(np.full((30, 30), 40000, np.uint16)).save(src / "sixteen_bit.png")
    Image.new("CMYK", (30, 30), (255, 0, 0, 0)).save(src / "cmyk.jpg")
    pal = Image.new("P", (30, 30), 1)
    pal.putpalette([0, 0, 0, 10, 200, 10] + [0, 0, 0] * 254)
    pal.save(src / "palette_transparent.png", transparency=0)
    Image.new("LA", (30, 30), (90, 128)).save(src / "la.png")
    Image.new("RGBA", (30, 30), (10, 10, 200, 255)).save(src / "rgba.png")
    Image.new("RGB", (30, 30), (255, 255, 0)).save(
        src / "anim.gif", save_all=True, append_images=[Image.new("RGB", (30, 30), (0, 0, 0))]
    )
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (60, 30), (120, 60, 200)).save(src / "exif.jpg", exif=exif)
    png(src / "my holiday photo.png", color=(1, 2, 3))
    with open(os.path.join(os.fsencode(src), b"caf\xe9-latin1.png"), "wb") as f:  # not valid UTF-8
        f.write(png(tmp_path / "x.png", color=(9, 9, 9)).read_bytes())
    png(src / "locked.png", color=(50, 50, 50))
    os.symlink("loop_b.png", src / "loop_a.png")
    os.symlink("loop_a.png", src / "loop_b.png")
    (src / "sub").mkdir()
    os.symlink("..", src / "sub" / "up")  # a folder loop: not followed
    shutil.copy(src / "good.png", src / "sub" / "good_again.png")
    (src / "notes.txt").write_text("ignored")
    os.mkfifo(src / "pipe.png")  # used to block `gan prepare` for ever
    os.symlink("/dev/zero", src / "devzero.png")  # used to read without end

    real_open = os.open

    def os_open(path, *args, **kwargs):  # the tests run as root, where chmod 000 does not stop a read
        if os.fsdecode(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(folder.os, "open", os_open)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000_000)  # bomb.png (9 MP) exceeds twice the limit
    monkeypatch.chdir(tmp_path)
    return src


EXPECTED_SKIPS = {
    "zero.png": "empty file (0 bytes)",
    "truncated.jpg": "cannot decode: image file is truncated",
    "truncated.png": "cannot decode",
    "text.jpg": "not an image file Pillow can read",
    "bomb.png": "too many pixels (decompression bomb guard)",
    "locked.png": "cannot read: Permission denied",
    "loop_a.png": "cannot read: Too many levels of symbolic links",
    "loop_b.png": "cannot read: Too many levels of symbolic links",
    "sub/good_again.png": "duplicate of good.png",
    "pipe.png": "not a regular file",
    "devzero.png": "not a regular file",
}
EXPECTED_NOTES = {"one_pixel.png": "upscaled from 1x1", "wide.png": "4000x10 is far from square; cropped to its centre"}
EXPECTED_KEPT = {
    "good.png",
    "sixteen_bit.png",
    "cmyk.jpg",
    "palette_transparent.png",
    "la.png",
    "rgba.png",
    "anim.gif",
    "exif.jpg",
    "my holiday photo.png",
    "caf\\xe9-latin1.png",
    *EXPECTED_NOTES,
}


def test_every_case_has_its_outcome(catalogue, capsys):
    manifest = prepare.run(parse_params({"prepare": {"source": str(catalogue), "image_size": 32}}))
    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == set(EXPECTED_SKIPS)
    for name, reason in EXPECTED_SKIPS.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    kept = {k["file"]: k.get("note") for k in manifest["images"]}
    assert set(kept) == EXPECTED_KEPT
    for name, note in EXPECTED_NOTES.items():
        assert kept[name] == note
    assert manifest["ignored_other_files"] == 1
    out = capsys.readouterr().out
    assert "skipped" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "prepare.source: folder '{d}' does not exist"),
        (lambda d: d.mkdir(), "prepare.source: no image files in '{d}' (0 other files"),
        (
            lambda d: (d.mkdir(), (d / "a.txt").write_text("x"), (d / "b.csv").write_text("y")),
            "no image files in '{d}' (2 other files",
        ),
        (
            lambda d: (d.mkdir(), (d / "a.png").write_bytes(b"")),
            "no usable image in '{d}': all 1 image files were skipped (first: a.png: empty file",
        ),
        (lambda d: d.write_text("a file"), "prepare.source: '{d}' is not a folder"),
    ],
    ids=["missing", "empty", "non-images", "only-bad-images", "a-file"],
)
def test_unusable_sources_are_one_line_errors(tmp_path, monkeypatch, setup, message):
    monkeypatch.chdir(tmp_path)
    setup(Path("src"))
    with pytest.raises(UserError) as e:
        prepare.run(parse_params({"prepare": {"source": "src"}}))
    assert message.format(d="src") in str(e.value) and "\n" not in str(e.value)


def test_padding_counts_pixels_after_the_resize(tmp_path, monkeypatch):
    """A 372-byte PNG of 100000 x 1 pixels passed the pixel guard and then built a 100000^2 canvas."""
    monkeypatch.chdir(tmp_path)
    png(Path("strip.png").parent.joinpath("src").mkdir() or Path("src/strip.png"), (100_000, 1), (0, 0, 0))
    manifest = prepare.run(parse_params({"prepare": {"source": "src", "image_size": 32, "crop": "pad"}}))
    assert manifest["images"][0]["note"] == "100000x1 is far from square; padded"
    data = torch.load("data/prepared/dataset.pt", weights_only=True)["images"]
    dark_rows = (data[0].float().mean(0) < 0).all(1)
    assert (
        data.shape == (1, 3, 32, 32) and int(dark_rows.sum()) == 1 and float(data[0, :, 0].min()) == 1.0
    )  # a black line on white


def test_files_over_the_byte_cap_are_skipped_unread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("src").mkdir()
    png(Path("src/small.png"), (8, 8))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save("src/large.png")
    monkeypatch.setattr(folder, "MAX_FILE_BYTES", 2**16)
    manifest = prepare.run(parse_params({"prepare": {"source": "src", "image_size": 32}}))
    assert [k["file"] for k in manifest["images"]] == ["small.png"]
    assert manifest["skipped"] == [
        {"file": "large.png", "reason": "0.115 MB: larger than the 0.0625 MB an image file may be"}
    ]


def test_a_smaller_demo_leaves_no_old_faces(tmp_path, monkeypatch):
    """Lowering prepare.demo.count kept the old faces ("1000 images") and then broke `gan attributes`."""
    monkeypatch.chdir(tmp_path)
    assert prepare.run(parse_params({"prepare": {"demo": {"count": 12}, "image_size": 32}}))["count"] == 12
    assert prepare.run(parse_params({"prepare": {"demo": {"count": 5}, "image_size": 32}}))["count"] == 5
    assert len(list(Path("data/prepared/demo").glob("*.png"))) == 5
