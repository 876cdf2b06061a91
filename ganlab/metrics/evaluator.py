"""The one evaluation of a generator, used by training (to keep the best one) and by ``gan evaluate``.

Distances are measured in ImageNet features against the training images, next to a floor: the
same distance between two random halves of the training images. "fd 78 (floor 52)" then means
something on 40 images as on 1000.

One floor, whatever the number of samples: a distance between finite samples is biased upward,
the more the fewer there are (with 1000 demo faces, the real-vs-real fd is 52 at 256 samples a
side and 35 at 500), so a ratio over a floor means the same only at one sample count. Every fd
and swd, and their floors, are measured at ``n = min(SAMPLES, half)`` images a side (``half``:
half the training images); more samples are scored in chunks of ``n`` and the chunks averaged,
which lowers the noise and leaves the expected value alone. So the in-training evaluation (256
samples) and ``gan evaluate`` (1000) give the same fd_ratio for the same generator, within fd_std.

The Fréchet distance is taken in the leading principal components of the training images'
features, at most n/4 of them for n samples per side: with 20 to 500 samples in 1280
dimensions, the full covariances are mostly estimation noise, and a collapsed generator (one
picture, no variance) would score close to the floor.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from torch import nn

from ganlab.device import device_of
from ganlab.metrics.attributes import AttributeNet, predict
from ganlab.metrics.features import FeatureNet, features
from ganlab.metrics.pixels import CoverageStream, SwdStream, chunks
from ganlab.metrics.sampler import fixed_latents, generate
from ganlab.metrics.scores import (
    InceptionScores,
    fidelity_of,
    frechet_distance,
    kernel_distance,
    memorisation_of,
    nearest,
    precision_recall,
)

# What `dvc metrics show` and `dvc exp show` list; every number is in reports/evaluate/metrics_detail.json and MLflow.
HEADLINE = (
    "swd",
    "swd_floor",
    "swd_ratio",
    "swd_std",
    "ndb",
    "ndb_floor",
    "fd",
    "fd_floor",
    "fd_ratio",
    "fd_std",
    "kid",
    "precision",
    "recall",
    "nn_ratio",
    "copy_share",
    "attr_tv_mean",
    "fid",
    "inception_kid",
)
# Numbers that describe the evaluation, not the generator: the same at every evaluation of a run.
CONSTANTS = ("fd_dims", "fd_samples", "fd_chunks", "swd_samples", "ndb_bins")
SPLITS = 5  # random halves of the training images; the spread of fd over them says how far it can be trusted
MAX_DIMS = 64  # principal components of the features that the Fréchet distance looks at (fewer for small sets)
FEW_SAMPLES = 50  # per half: below this the figures are rough, and the output says so
PROJECT_ROWS = 4096  # features projected at a time
CHUNK = 256  # samples generated and scored at a time: what is kept of each is its features and a few numbers
CLOSEST = 8  # the samples nearest a training image that an evaluation keeps (reports/evaluate/closest_pairs.png)
SAMPLES = 256  # images a side at which fd, swd and their floors are measured (fewer only where half the set is fewer): train.eval_samples's default


@dataclass
class Reference:
    """The training images as the metrics see them: their features and random half splits."""

    features: torch.Tensor  # (N, D) on the feature net's device
    seed: int = 0

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        n = len(self.features)
        self.splits = [torch.randperm(n, generator=g).to(self.features.device) for _ in range(SPLITS)]
        self.half = n // 2
        self.n = min(self.half, SAMPLES)  # images a side of every fd and floor
        f = self.features.double()
        self.mean = f.mean(0)
        self.basis = torch.linalg.svd(f - self.mean, full_matrices=False).Vh[:MAX_DIMS].T  # (D, <= MAX_DIMS)
        self.projected = self.project(self.features, self.dims(self.n))
        self._floors: list[float] | None = None
        self.swd_floors: dict[str, list[float]] = {}  # swd_scores' floors per level, kept for the next evaluation

    @staticmethod
    def dims(n: int) -> int:
        return max(2, min(MAX_DIMS, n // 4))

    def project(self, f: torch.Tensor, k: int) -> torch.Tensor:
        """In blocks of rows: a float64 copy of 50000 samples' features is half a gigabyte."""
        return torch.cat([(c.double() - self.mean) @ self.basis[:, :k] for c in f.split(PROJECT_ROWS)])

    def _second(self, p: torch.Tensor) -> torch.Tensor:
        return self.projected[p[self.half : 2 * self.half]]

    def fd(self, fake: torch.Tensor) -> list[float]:
        """Fréchet distance of each chunk of ``n`` fake samples (:func:`chunks`) to the second
        half of each split."""
        f = self.project(fake, self.projected.shape[1])
        return [frechet_distance(f[c], self._second(p)) for c in chunks(len(f), self.n) for p in self.splits]

    def floors(self) -> list[float]:
        """FD(n of the first half, the second half) of each split: what a perfect generator scores,
        the same whatever the number of samples."""
        if self._floors is None:
            self._floors = [frechet_distance(self.projected[p[: self.n]], self._second(p)) for p in self.splits]
        return self._floors


@dataclass
class Evaluation:
    metrics: dict[str, float]
    notes: dict[str, str]  # metric -> why it is unavailable or how far to trust it
    count: int  # the samples scored
    closest: torch.Tensor  # the CLOSEST samples nearest a training image, nearest first, on the generator's device
    closest_real: torch.Tensor  # the index of the training image nearest each of them


FEATURE_METRICS = ("fd", "fd_std", "fd_floor", "fd_floor_std", "fd_ratio", "kid", "kid_std", "precision", "recall")
PIXEL_METRICS = (
    "swd",
    "swd_std",
    "swd_floor",
    "swd_floor_std",
    "swd_ratio",
    "ndb",
    "ndb_std",
    "ndb_floor",
    "ndb_js",
    "ndb_js_floor",
    "ndb_under",
    "ndb_over",
)
MIN_IMAGES = 8  # two halves of 4: the fewest for a k = 3 nearest-neighbour radius and a covariance


def feature_scores(fake: torch.Tensor, ref: Reference) -> tuple[dict[str, float], dict[str, str]]:
    """fd (and its floor), kid and precision/recall of generated features against the reference."""
    if len(ref.features) < MIN_IMAGES or len(fake) < MIN_IMAGES:
        why = f"undefined for fewer than {MIN_IMAGES} images ({len(ref.features)} training images, {len(fake)} samples)"
        return dict.fromkeys(FEATURE_METRICS, math.nan), {"fd": why}
    fds, floors, n = ref.fd(fake), ref.floors(), ref.n
    fd, fd_std, floor = statistics.fmean(fds), statistics.pstdev(fds), statistics.fmean(floors)
    kid, kid_std = kernel_distance(fake, ref.features)
    precision, recall = precision_recall(ref.features, fake)
    metrics = {
        "fd": fd,
        "fd_std": fd_std,
        "fd_floor": floor,
        "fd_floor_std": statistics.pstdev(floors),
        "fd_ratio": fd / floor if floor > 0 else math.inf,
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "fd_samples": float(n),
        "fd_chunks": float(len(chunks(len(fake), n))),
        "fd_dims": float(ref.dims(n)),
    }
    notes = {}
    if len(fake) < n:
        notes["fd"] = (
            f"{len(fake)} samples, fewer than the {n} a side at which the floors are measured: fd and swd read "
            f"high against their floors (a distance between fewer samples is larger); score at least {n}"
        )
    elif n < FEW_SAMPLES:
        notes["fd"] = (
            f"only {n} samples per side ({2 * ref.half} training images, split in halves): fd is rough "
            f"(+-{fd_std:.3g} between random halves); runs on these images differ only where their fd differ by more"
        )
    return metrics, notes


def pixel_scores(fake: torch.Tensor, real: torch.Tensor, ref: Reference) -> dict[str, float]:
    """The ImageNet-free half of the panel (``metrics/pixels.py``) on the same random halves as fd."""
    streams = _pixel_streams(real, ref, len(fake))
    if streams is None:
        return dict.fromkeys(PIXEL_METRICS, math.nan)
    for stream in streams:
        stream.add(fake)
    return {k: v for stream in streams for k, v in stream.result().items()}


def _pixel_streams(real: torch.Tensor, ref: Reference, count: int) -> tuple[SwdStream, CoverageStream] | None:
    if len(real) < MIN_IMAGES or count < MIN_IMAGES:
        return None
    splits = [p.to(real.device) for p in ref.splits]
    return (
        SwdStream(real, splits, ref.n, count, seed=ref.seed, floors=ref.swd_floors),
        CoverageStream(real, splits, seed=ref.seed),
    )


def evaluate_generator(
    G: nn.Module,
    real: torch.Tensor,
    samples: int,
    seed: int,
    feature_net: FeatureNet,
    ref: Reference,
    attributes: AttributeNet | None = None,
    fid_weights: str | None = None,
) -> Evaluation:
    """Score ``samples`` images from ``seed``'s latents against ``real``, on G's device: at least
    ``ref.n`` (at most 256), the count a side at which fd and swd are measured, so that they
    always meet their floors at the same count.

    The samples are generated and scored ``CHUNK`` at a time, and only their features and a few
    numbers each are kept: all of them at once were 600 MB at 50000 samples of 32 px, 39 GB at
    256 px. Each measure, fed chunk by chunk, gives the numbers it gave on all the samples at once.

    ``ref``: the real images' features (:func:`reference`). ``attributes``: the demo's attribute
    classifier, or None where there are no labels. ``fid_weights``: None skips the standard
    FID/KID (in-training evaluation), else the setting of ``evaluate.inception_weights``.
    """
    real = real.to(device_of(G)).float()
    count = max(samples, ref.n)
    pixels = _pixel_streams(real, ref, count)
    inception, why_not_fid = InceptionScores.open(real, count, fid_weights) if fid_weights is not None else (None, "")
    feats, dist, probs, closest = [], [], [], None
    for z in fixed_latents(seed, G.latent_size, count).split(CHUNK):
        fake = generate(G, z)
        feats.append(features(feature_net, fake))
        d, i = nearest(fake, real)
        dist.append(d)
        closest = _closest(closest, (d, fake, i))
        for stream in pixels or ():
            stream.add(fake)
        if attributes is not None:
            probs.append(predict(attributes, fake))
        if inception is not None:
            inception.add(fake)
    feats = torch.cat(feats)  # the chunks' copies go: 256 MB at 50000 samples
    metrics, notes = feature_scores(feats, ref)
    if pixels is None:
        metrics.update(dict.fromkeys(PIXEL_METRICS, math.nan))
    else:
        for stream in pixels:
            metrics.update(stream.result())
    if attributes is not None:
        pg = {a: torch.cat([p[a] for p in probs]) for a in probs[0]}
        metrics.update(fidelity_of(attributes, pg, predict(attributes, real)))
    metrics.update(memorisation_of(torch.cat(dist), real))
    if len(real) < 2:
        notes["memorisation"] = (
            f"{len(real)} training image: no distance between training images to compare samples "
            "with, so nn_ratio and copy_share are undefined (null)"
        )
    if inception is not None:
        metrics.update(inception.result())
    elif why_not_fid:
        notes["fid"] = why_not_fid
    return Evaluation(metrics, notes, count, closest[1], closest[2])


def _closest(kept: tuple[torch.Tensor, ...] | None, chunk: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """(distance, sample, nearest training image) of the ``CLOSEST`` samples nearest a training
    image among those ``kept`` and a new ``chunk``, nearest first, earlier first among equals."""
    if kept is not None:
        chunk = tuple(torch.cat(pair) for pair in zip(kept, chunk))
    order = chunk[0].argsort(stable=True)[:CLOSEST]
    return tuple(t[order] for t in chunk)
