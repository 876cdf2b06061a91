"""A small real-photo data set for measurements: random crops of scikit-image's sample photos.

Not part of the pipeline and never committed as data; needs `pip install scikit-image`.
    python scripts/make_photo_crops.py data/raw/photos --count 150
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import skimage.data

    photos = [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        k = int(rng.integers(len(photos)))
        img = photos[k]
        side = int(rng.integers(min(img.shape[:2]) // 4, min(img.shape[:2]) // 2 + 1))
        y, x = (int(rng.integers(0, img.shape[d] - side + 1)) for d in (0, 1))
        Image.fromarray(img[y : y + side, x : x + side]).save(args.out / f"{PHOTOS[k]}_{i:04d}.png")
    print(f"wrote {args.count} crops of {len(PHOTOS)} photographs to {args.out}")


if __name__ == "__main__":
    main()
