"""Distances measured on the pixels themselves, with no pretrained network: the panel's check on
the ImageNet-feature metrics.

A discriminator that trains against ImageNet features (the projected D) can lower an ImageNet
metric without making the images better (Kynkäänniemi et al., "The Role of ImageNet Classes in
Fréchet Inception Distance", ICLR 2023). These numbers cannot be gamed that way:

- ``swd``: the sliced Wasserstein distance of ProGAN (Karras et al. 2018) between 7 x 7
  neighbourhoods of a Laplacian pyramid, from the image size down to 16 px. The fine levels
  catch texture artifacts and blur, the coarse ones colour and layout.
- ``ndb``: the number of statistically different bins (Richardson & Weiss 2018): the training
  images are clustered by k-means in pixel space, and a bin the samples fill significantly less
  (or more) often than the real images is a dropped (or over-drawn) mode.

Both come with their floor, the same measure between two random halves of the training images,
and their spread over those halves. swd and its floor are measured at one count of images a
side, whatever the number of samples (``evaluator.SAMPLES``: more samples are scored in chunks).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
import torch.nn.functional as F

SWD_MIN_SIZE = 16  # the coarsest pyramid level, as in ProGAN
NHOOD = 7  # neighbourhood side
NHOODS_PER_IMAGE = 128
DIR_REPEATS, DIRS_PER_REPEAT = 4, 128  # 512 random projections
NDB_PIXELS = 16  # k-means sees images at 16 x 16: layout and colour, not noise
NDB_ALPHA = 0.05  # significance of a bin's difference


def _binomial(channels: int, device: torch.device) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device)
    k = torch.outer(k, k) / 256
    return k.expand(channels, 1, 5, 5).contiguous()


def laplacian_pyramid(images: torch.Tensor) -> list[torch.Tensor]:
    """ProGAN's pyramid: band-pass levels from the full size down, the last one a low-pass at 16 px."""
    kernel = _binomial(images.shape[1], images.device)
    levels, current = [], images.float()
    while current.shape[-1] > SWD_MIN_SIZE:
        down = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="reflect"), kernel, stride=2, groups=current.shape[1])
        up = torch.zeros_like(current)
        up[..., ::2, ::2] = down * 4
        up = F.conv2d(F.pad(up, (2, 2, 2, 2), mode="reflect"), kernel, groups=current.shape[1])
        levels.append(current - up)
        current = down
    levels.append(current)
    return levels


def _positions(count: int, h: int, w: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The centres of ``NHOODS_PER_IMAGE`` random 7 x 7 neighbourhoods in each of ``count`` images
    of h x w: rows, then columns, as (count, P) each."""
    half = NHOOD // 2
    ys = torch.randint(half, h - half, (count, NHOODS_PER_IMAGE), generator=generator)
    xs = torch.randint(half, w - half, (count, NHOODS_PER_IMAGE), generator=generator)
    return ys, xs


def descriptors(level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``NHOODS_PER_IMAGE`` random 7 x 7 neighbourhoods per image, as rows of (3 * 49) values."""
    return _gather(level, *_positions(len(level), *level.shape[-2:], generator))


def _gather(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    n, c, h, w = level.shape
    half = NHOOD // 2
    offsets = torch.arange(-half, half + 1)
    rows = (ys[..., None].long() + offsets).to(level.device)  # (n, P, 7)
    cols = (xs[..., None].long() + offsets).to(level.device)
    flat = level.flatten(2)  # (n, c, h*w)
    index = (rows[..., :, None] * w + cols[..., None, :]).flatten(2)  # (n, P, 49)
    patches = torch.gather(
        flat[:, None].expand(n, NHOODS_PER_IMAGE, c, h * w),
        3,
        index[:, :, None].expand(n, NHOODS_PER_IMAGE, c, NHOOD * NHOOD),
    )
    return patches.reshape(n, NHOODS_PER_IMAGE, c * NHOOD * NHOOD)


def _level_shapes(h: int, w: int) -> list[tuple[int, int]]:
    """(h, w) of each level :func:`laplacian_pyramid` makes of h x w images."""
    shapes = []
    while w > SWD_MIN_SIZE:
        shapes.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2  # a 5-tap filter, padded by 2, at stride 2
    return [*shapes, (h, w)]


def _channel_stats(desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = desc.reshape(len(desc), 3, NHOOD * NHOOD)
    return rows.mean(dim=(0, 2), keepdim=True), rows.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)


def _normalise(desc: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    mean, std = stats
    return ((desc.reshape(len(desc), 3, NHOOD * NHOOD) - mean) / std).reshape(len(desc), -1)


def _directions(dims: int, seed: int, device: torch.device) -> list[torch.Tensor]:
    d = torch.randn(DIR_REPEATS, dims, DIRS_PER_REPEAT, generator=torch.Generator().manual_seed(seed))
    return list((d / d.norm(dim=1, keepdim=True)).to(device))


def sorted_rows(projections: torch.Tensor) -> torch.Tensor:
    """(values, dirs) -> each direction's values sorted, as (dirs, values). On a CPU by NumPy,
    whose AVX-512 sort of values alone is about 9x faster here than ``torch.sort``, which also
    returns positions (the whole cost of an evaluation was these sorts)."""
    rows = projections.T.contiguous()
    if rows.device.type == "cpu":
        return torch.from_numpy(np.sort(rows.numpy(), axis=1))
    return torch.sort(rows, dim=1).values


def chunks(count: int, n: int) -> list[slice]:
    """``count`` samples as disjoint chunks of ``n`` (the rest unused), or one chunk of all where
    fewer: a distance is measured on each chunk and the chunks averaged, so that more samples
    lower its noise without changing what it measures."""
    return [slice(i, i + n) for i in range(0, count - n + 1, n)] or [slice(0, count)]


# The samples are scored by swd in batches of whole chunks of n, each batch in about this many bytes
# of images, neighbourhoods and sorted projections (340 KB a sample at 64 px: 1000 samples are one
# batch). Each batch sorts the training images' sides again: keeping them sorted for every level
# and projection would take more (a gigabyte at 64 px) than these batches.
SWD_BATCH_BYTES = 2**28
PYRAMID_BYTES = 2**26  # images whose pyramid is built at once: its steps take about 10 copies of the images


def swd_scores(
    fake: torch.Tensor,
    real: torch.Tensor,
    splits: list[torch.Tensor],
    n: int,
    seed: int = 0,
    floors: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """SWD of ``fake`` against one half of the training images, per level and averaged (x 1e3,
    as ProGAN reports it), with the floor (one half against the other) and the spread of both
    over ``splits`` (and of the swd over chunks of samples).

    Every side holds ``n`` images (at most half the training images), since the sorted
    projections are compared rank by rank: the floor compares n images of each half, each chunk
    of n samples (:func:`chunks`) is compared with the second half's n, and the swd is the mean
    over chunks and splits. The floor does not depend on the number of samples: its
    neighbourhoods come from ``seed``, the samples' from ``seed + 1``, the projections from
    ``seed`` for both. Only each side's values are sorted (:func:`sorted_rows`), never the
    positions: a side's sorted values do not depend on which of two equal values came first.

    Every side is normalised per channel with the statistics of all training images. ProGAN
    normalises each set by its own, which would hide a generator's shift in colour or contrast.

    ``floors``: the floors per level, kept between calls with the same training images, splits,
    ``n`` and ``seed`` (a run's evaluations): filled by the first call, read by the next, which
    then sort only the second halves they compare samples with.
    """
    stream = SwdStream(real, splits, n, len(fake), seed, floors)
    stream.add(fake)
    return stream.result()


class SwdStream:
    """:func:`swd_scores` of samples that arrive in chunks, in order (:meth:`add`), in memory
    bounded whatever their number: all of them at once held their pyramids, neighbourhoods and
    sorted projections, half a megabyte a sample. The samples' neighbourhoods are drawn for all
    of them up front (2 bytes a coordinate), so that any batching gives the numbers of one batch
    of all; the training images' side is computed once, and only for the images it compares."""

    def __init__(
        self,
        real: torch.Tensor,
        splits: list[torch.Tensor],
        n: int,
        count: int,
        seed: int = 0,
        floors: dict[str, list[float]] | None = None,
    ):
        half = len(real) // 2
        self.splits, self.seed = splits, seed
        self.n = n = min(n, half)
        self.parts = chunks(count, n)
        self.m = m = self.parts[0].stop - self.parts[0].start  # n, or all the samples where fewer
        self.used = self.parts[-1].stop
        sides = [(p[:n], p[half : half + n], p[half : half + m]) for p in splits]
        compared = torch.cat([ix for side in sides for ix in side]).unique()  # the training images a side holds
        where = torch.full((len(real),), -1, dtype=torch.long)
        where[compared] = torch.arange(len(compared))
        self.sides = [tuple(where[ix].to(real.device) for ix in side) for side in sides]
        self.floors = floors if floors is not None else {}
        self.real: list[
            tuple[int, tuple[torch.Tensor, torch.Tensor], torch.Tensor]
        ] = []  # per level: size, stats, sides
        g_real = torch.Generator().manual_seed(seed)
        for rl in laplacian_pyramid(real):
            real_desc = descriptors(rl, g_real)  # one set of neighbourhoods per training image
            stats = _channel_stats(real_desc.flatten(0, 1))
            kept = real_desc[compared.to(real.device)].flatten(0, 1)
            self.real.append((rl.shape[-1], stats, _normalise(kept, stats)))
            del real_desc
        # the samples' neighbourhoods drawn apart from the training images': the floor's are the same for any samples
        g_fake = torch.Generator().manual_seed(seed + 1)
        self.positions = [
            tuple(t.to(torch.int16) for t in _positions(self.used, h, w, g_fake))
            for h, w in _level_shapes(*real.shape[-2:])
        ]
        per_image = 4 * (
            real[0].numel() + NHOODS_PER_IMAGE * (3 * NHOOD * NHOOD * len(self.positions) + DIRS_PER_REPEAT)
        )
        self.batch = max(1, SWD_BATCH_BYTES // (per_image * m))  # chunks of samples a batch
        self.pyramid_batch = max(1, PYRAMID_BYTES // (10 * real[0].numel() * 4))
        self.to_fake: dict[str, list[float]] = {}
        self.buffers: list[torch.Tensor] = []  # per level, the normalised neighbourhoods of one batch's samples
        self.received = self.done = 0  # samples received; chunks scored

    def add(self, images: torch.Tensor) -> None:
        """The next samples, in order; those past the last whole chunk go unused."""
        images = images[: self.used - self.received]
        if not self.buffers and len(images):  # allocated once: batches of fresh tensors fragmented the heap
            rows = min(self.batch, len(self.parts)) * self.m
            shape = (rows, NHOODS_PER_IMAGE, images.shape[1] * NHOOD * NHOOD)
            self.buffers = [torch.empty(shape, device=images.device) for _ in self.real]
        while len(images):
            first, k = self.parts[self.done].start, min(self.batch, len(self.parts) - self.done)
            stop = self.parts[self.done + k - 1].stop  # the batch's samples: first .. stop
            part, images = images[: stop - self.received], images[stop - self.received :]
            self._describe(part, self.received - first)
            self.received += len(part)
            if self.received == stop:
                self._score(stop - first, k)

    def _describe(self, fake: torch.Tensor, offset: int) -> None:
        """The next samples' neighbourhoods (as drawn for them), normalised, into the batch's
        buffers from row ``offset``; the pyramids built a few images at a time."""
        for i in range(0, len(fake), self.pyramid_batch):
            part = fake[i : i + self.pyramid_batch]
            drawn = slice(self.received + i, self.received + i + len(part))
            rows = slice(offset + i, offset + i + len(part))
            for out, (ys, xs), fl, (_, stats, _) in zip(
                self.buffers, self.positions, laplacian_pyramid(part), self.real
            ):
                out[rows] = _normalise(_gather(fl, ys[drawn], xs[drawn]).flatten(0, 1), stats).view(
                    len(part), NHOODS_PER_IMAGE, -1
                )

    def _score(self, size: int, k: int) -> None:
        """Chunks ``done`` .. ``done + k`` of samples, the first ``size`` rows of the buffers,
        against the training images' sides."""
        parts, splits, start = self.parts, self.splits, self.parts[self.done].start
        local = [slice(c.start - start, c.stop - start) for c in parts[self.done : self.done + k]]
        for (level_size, _, real_desc), buffer in zip(self.real, self.buffers):
            fake_desc = buffer[:size]
            level = f"swd_{level_size}px"
            known = level in self.floors
            floor = self.floors[level] if known else [0.0] * len(splits)
            to_fake = self.to_fake.setdefault(level, [0.0] * (len(parts) * len(splits)))
            for directions in _directions(fake_desc.shape[-1], self.seed + level_size, fake_desc.device):
                # (dirs, m * P) per chunk
                fake_sorted = [sorted_rows(fake_desc[c].flatten(0, 1) @ directions) for c in local]
                real_proj = (real_desc @ directions).view(
                    -1, NHOODS_PER_IMAGE, directions.shape[1]
                )  # (images, P, dirs)
                for i, (first_ix, second_ix, against_ix) in enumerate(self.sides):
                    second = sorted_rows(real_proj[second_ix].flatten(0, 1))
                    if not known:
                        first = sorted_rows(real_proj[first_ix].flatten(0, 1))
                        floor[i] += float((first - second).abs().mean()) * 1e3 / DIR_REPEATS
                    against = second if self.m == self.n else sorted_rows(real_proj[against_ix].flatten(0, 1))
                    for j, f in enumerate(fake_sorted):
                        to_fake[(self.done + j) * len(splits) + i] += (
                            float((f - against).abs().mean()) * 1e3 / DIR_REPEATS
                        )
            self.floors[level] = floor
        self.done += k
        if self.done == len(self.parts):
            self.buffers = []  # scored: the rest of the evaluation goes on without them

    def result(self) -> dict[str, float]:
        if self.done < len(self.parts):
            raise ValueError(f"swd: {self.received} samples received of the {self.used} announced")
        per_level = {level: (to_fake, self.floors[level]) for level, to_fake in self.to_fake.items()}
        out = {key: statistics.fmean(to_fake) for key, (to_fake, _) in per_level.items()}
        mean_to_fake = [statistics.fmean(v) for v in zip(*(t for t, _ in per_level.values()))]
        mean_floor = [statistics.fmean(v) for v in zip(*(f for _, f in per_level.values()))]
        swd, floor = statistics.fmean(mean_to_fake), statistics.fmean(mean_floor)
        out.update(
            swd=swd,
            swd_std=statistics.pstdev(mean_to_fake),
            swd_floor=floor,
            swd_floor_std=statistics.pstdev(mean_floor),
            swd_ratio=swd / floor if floor > 0 else math.inf,
            swd_samples=float(self.n),
        )
        return out


def _kmeans(x: torch.Tensor, k: int, seed: int, iterations: int = 30) -> torch.Tensor:
    """Lloyd's k-means from a k-means++ start; returns the centres (k, D)."""
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
        d = torch.cdist(x, centres).min(dim=1).values.square()
        centres = torch.cat([centres, x[torch.multinomial(d.cpu() + 1e-12, 1, generator=g).to(x.device)]])
    for _ in range(iterations):
        label = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, label, x)
        counts = torch.bincount(label, minlength=k).to(x.dtype)[:, None]
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres


def _small(images: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(images.float(), NDB_PIXELS).flatten(1).double()


def _ndb(
    train_hist: torch.Tensor, n_train: int, other_labels: torch.Tensor, k: int
) -> tuple[float, float, float, float]:
    """Share of bins where ``other`` differs from the training half (two-proportion z-test), the
    shares it under- and over-fills, and the Jensen-Shannon divergence of the two histograms."""
    n = len(other_labels)
    q = torch.bincount(other_labels, minlength=k).double() / n
    p = train_hist
    pooled = (p * n_train + q * n) / (n_train + n)
    se = (pooled * (1 - pooled) * (1 / n_train + 1 / n)).sqrt()
    z = torch.where(se > 0, (q - p) / se.clamp_min(1e-12), torch.zeros_like(se))
    critical = statistics.NormalDist().inv_cdf(1 - NDB_ALPHA / 2)
    under, over = float((z < -critical).double().mean()), float((z > critical).double().mean())
    m = (p + q) / 2

    def kl(a):
        return float((a[a > 0] * (a[a > 0] / m[a > 0]).log()).sum())

    return under + over, under, over, 0.5 * kl(p) + 0.5 * kl(q)


def ndb_bins(half: int) -> int:
    """About 10 training images a bin, between 2 and 50 bins."""
    return max(2, min(50, half // 10))


def coverage_scores(
    fake: torch.Tensor, real: torch.Tensor, splits: list[torch.Tensor], seed: int = 0
) -> dict[str, float]:
    """NDB and JS over k-means bins of one half of the training images, for the samples and, as
    the floor, for the other half; averaged over ``splits``."""
    stream = CoverageStream(real, splits, seed)
    stream.add(fake)
    return stream.result()


class CoverageStream:
    """:func:`coverage_scores` of samples that arrive in chunks (:meth:`add`): the bins come from
    the training images alone, so a sample is kept as its bin in each split, 8 bytes each."""

    def __init__(self, real: torch.Tensor, splits: list[torch.Tensor], seed: int = 0):
        self.half = half = len(real) // 2
        self.k = k = ndb_bins(half)
        small_real = _small(real)
        self.bins: list[tuple[torch.Tensor, torch.Tensor]] = []  # (centres, histogram of the first half) per split
        self.floors: list[tuple[float, float]] = []
        for i, p in enumerate(splits):
            first, second = small_real[p[:half]], small_real[p[half : 2 * half]]
            centres = _kmeans(first, k, seed + i)
            hist = torch.bincount(torch.cdist(first, centres).argmin(1), minlength=k).double() / half
            ndb_floor, _, _, js_floor = _ndb(hist, half, torch.cdist(second, centres).argmin(1), k)
            self.bins.append((centres, hist))
            self.floors.append((ndb_floor, js_floor))
        self.labels: list[list[torch.Tensor]] = [[] for _ in splits]

    def add(self, fake: torch.Tensor) -> None:
        small = _small(fake)
        for (centres, _), labels in zip(self.bins, self.labels):
            labels.append(torch.cdist(small, centres).argmin(1))

    def result(self) -> dict[str, float]:
        rows: dict[str, list[float]] = {
            key: [] for key in ("ndb", "ndb_under", "ndb_over", "ndb_js", "ndb_floor", "ndb_js_floor")
        }
        for (_, hist), labels, (ndb_floor, js_floor) in zip(self.bins, self.labels, self.floors):
            ndb, under, over, js = _ndb(hist, self.half, torch.cat(labels), self.k)
            for key, v in zip(rows, (ndb, under, over, js, ndb_floor, js_floor)):
                rows[key].append(v)
        out = {key: statistics.fmean(v) for key, v in rows.items()}
        out.update(
            ndb_std=statistics.pstdev(rows["ndb"]),
            ndb_floor_std=statistics.pstdev(rows["ndb_floor"]),
            ndb_bins=float(self.k),
        )
        return out
