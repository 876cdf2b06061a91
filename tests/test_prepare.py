"""``prepare`` reads what people really have in their folders, and says what it skipped."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab import layout
from ganlab.data.images import SkipImage, load_image
from ganlab.errors import UserError
from ganlab.params import parse_params
from stages import prepare

RED, BLUE = (255, 0, 0), (0, 0, 255)


def solid(color, size=(40, 30), mode="RGB"):
    return Image.new(mode, size, color)


@pytest.fixture
def mixed_folder(tmp_path):
    src = tmp_path / "images"
    (src / "nested" / "deeper").mkdir(parents=True)
    solid(RED).save(src / "rgb.png")
    solid((0, 200, 0)).save(src / "photo.JPG")
    solid(128, mode="L").save(src / "gray.png")
    Image.fromarray(np.full((30, 40), 32768, np.uint16)).save(src / "gray16.png")
    pal = Image.new("P", (30, 30), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    pal.save(src / "palette_alpha.png", transparency=0)  # index 0, red, fully transparent
    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 0))
    rgba.save(src / "transparent.png")
    Image.new("LA", (30, 30), (50, 255)).save(src / "la.png")
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(src / "cmyk.jpg")
    solid(BLUE).save(src / "image.webp")
    solid(BLUE).save(src / "image.bmp")
    solid(RED).save(src / "anim.gif", save_all=True, append_images=[solid(BLUE)], duration=100)
    solid(RED).save(src / "image.tiff")
    solid((10, 20, 30)).save(src / "nested" / "deeper" / "deep.png")
    rotated = Image.new("RGB", (40, 20), BLUE)
    rotated.paste(solid(RED, (20, 20)), (0, 0))  # red left half as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the red half ends up on top
    rotated.save(src / "exif_rotated.jpg", exif=exif, quality=95)
    # the bad ones
    (src / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    (src / "empty.png").write_bytes(b"")
    (src / "notes.png").write_text("this is not a picture")
    solid(BLUE, (200, 200)).save(src / "big.png")
    (src / "truncated.png").write_bytes((src / "big.png").read_bytes()[:150])
    (src / "big.png").unlink()
    shutil.copy(src / "rgb.png", src / "rgb_copy.png")
    (src / "readme.txt").write_text("ignored: not an image extension")
    return src


def test_mixed_folder(mixed_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_params({"prepare": {"source": str(mixed_folder), "image_size": 32}})
    manifest = prepare.run(params)

    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "empty.png", "notes.png", "truncated.png", "rgb_copy.png"}
    assert skipped["empty.png"] == "empty file (0 bytes)"
    assert skipped["rgb_copy.png"] == "duplicate of rgb.png"
    assert "not an image" in skipped["notes.png"] and "not an image" in skipped["corrupt.jpg"]
    assert "cannot decode" in skipped["truncated.png"]
    kept = [k["file"] for k in manifest["images"]]
    assert len(kept) == 14 and "nested/deeper/deep.png" in kept and "readme.txt" not in kept

    data = torch.load(layout.DATASET, weights_only=True)
    images = data["images"]
    assert images.shape == (14, 3, 32, 32) and images.dtype == torch.float16
    assert images.min() >= -1 and images.max() <= 1
    assert data["files"] == kept
    assert layout.PREVIEW.is_file() and json.loads(layout.MANIFEST.read_text())["count"] == 14


def test_files_without_an_image_extension_are_named_not_only_counted(mixed_folder, tmp_path, monkeypatch, capsys):
    """The manifest said `ignored_other_files: 1` and nowhere which file; a folder of stray files stays bounded."""
    monkeypatch.chdir(tmp_path)
    for i in range(prepare.IGNORED_NAMED + 1):
        (mixed_folder / "stray" / f"{i:03d}.txt").parent.mkdir(exist_ok=True)
        (mixed_folder / "stray" / f"{i:03d}.txt").write_text("x")
    manifest = prepare.run(parse_params({"prepare": {"source": str(mixed_folder), "image_size": 32}}))
    assert manifest["ignored_other_files"] == prepare.IGNORED_NAMED + 2
    names = manifest["ignored_other_file_names"]
    assert len(names) == prepare.IGNORED_NAMED and names[0] == "readme.txt" and names[1] == "stray/000.txt"
    note = f"ignored {prepare.IGNORED_NAMED + 2} files without an image extension: readme.txt, stray/000.txt,"
    assert note in capsys.readouterr().out


def pixels(path, size=32, **kw):
    return load_image(path, size, **kw)[0].astype(int)


def test_conversions(mixed_folder):
    assert abs(pixels(mixed_folder / "gray16.png").mean() - 128) <= 1  # 16-bit scaled, not clipped to white
    assert (pixels(mixed_folder / "transparent.png") == 255).all()  # composited on the white background
    assert (pixels(mixed_folder / "transparent.png", background=(0, 0, 0)) == 0).all()
    assert (pixels(mixed_folder / "palette_alpha.png") == 255).all()
    assert tuple(pixels(mixed_folder / "anim.gif")[16, 16]) == RED  # first frame
    cmyk = pixels(mixed_folder / "cmyk.jpg")[16, 16]
    assert cmyk[0] > 200 and cmyk[1] < 50 and cmyk[2] < 50  # C=0 M=Y=255 is red
    rotated = pixels(mixed_folder / "exif_rotated.jpg")
    assert rotated[4, 16, 0] > 200 and rotated[28, 16, 2] > 200  # red on top, blue below: EXIF applied


def test_center_crop_and_pad(tmp_path):
    wide = Image.new("RGB", (90, 30), BLUE)
    wide.paste(solid(RED, (30, 30)), (30, 0))
    wide.save(tmp_path / "wide.png")
    assert (pixels(tmp_path / "wide.png", crop="center")[..., 0] > 200).all()  # the middle square is red
    padded = pixels(tmp_path / "wide.png", crop="pad")
    assert tuple(padded[1, 16]) == (255, 255, 255) and padded[16, 16, 0] > 200


def test_bad_files_raise_skip(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(SkipImage, match="empty"):
        load_image(tmp_path / "x.png", 32)


def test_missing_or_empty_source_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="prepare.source: folder 'nowhere' does not exist"):
        prepare.run(parse_params({"prepare": {"source": "nowhere"}}))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("text")
    with pytest.raises(
        UserError, match="no usable image in 'junk': all 1 image files were skipped \\(first: a.png: not an image"
    ):
        prepare.run(parse_params({"prepare": {"source": "junk"}}))
    assert not layout.DATASET.exists()


def test_demo_source_writes_faces_and_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = prepare.run(parse_params({"prepare": {"image_size": 32, "demo": {"count": 12, "seed": 3}}}))
    assert manifest["count"] == 12 and not manifest["skipped"]
    labels = (layout.DEMO_IMAGES / "labels.csv").read_text().splitlines()
    assert len(labels) == 13 and labels[0].startswith("file,hair_length,hair_color")
