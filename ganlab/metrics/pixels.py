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


def descriptors(level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``NHOODS_PER_IMAGE`` random 7 x 7 neighbourhoods per image, as rows of (3 * 49) values."""
    n, c, h, w = level.shape
    half = NHOOD // 2
    ys = torch.randint(half, h - half, (n, NHOODS_PER_IMAGE), generator=generator)
    xs = torch.randint(half, w - half, (n, NHOODS_PER_IMAGE), generator=generator)
    offsets = torch.arange(-half, half + 1)
    rows = (ys[..., None] + offsets).to(level.device)  # (n, P, 7)
    cols = (xs[..., None] + offsets).to(level.device)
    flat = level.flatten(2)  # (n, c, h*w)
    index = (rows[..., :, None] * w + cols[..., None, :]).flatten(2)  # (n, P, 49)
    patches = torch.gather(
        flat[:, None].expand(n, NHOODS_PER_IMAGE, c, h * w),
        3,
        index[:, :, None].expand(n, NHOODS_PER_IMAGE, c, NHOOD * NHOOD),
    )
    return patches.reshape(n, NHOODS_PER_IMAGE, c * NHOOD * NHOOD)


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
    half = len(real) // 2
    n = min(n, half)
    parts = chunks(len(fake), n)
    m = parts[0].stop - parts[0].start  # n, or all the samples where fewer
    # the samples' neighbourhoods drawn apart from the training images': the floor's are the same for any samples
    g_real, g_fake = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    sides = [
        (p[:n].to(real.device), p[half : half + n].to(real.device), p[half : half + m].to(real.device)) for p in splits
    ]
    per_level: dict[str, tuple[list[float], list[float]]] = {}
    used = fake[: parts[-1].stop]
    for fl, rl in zip(laplacian_pyramid(used), laplacian_pyramid(real)):
        real_desc = descriptors(rl, g_real).flatten(0, 1)  # one set of neighbourhoods per training image
        stats = _channel_stats(real_desc)
        real_desc = _normalise(real_desc, stats)
        fake_desc = _normalise(descriptors(fl, g_fake).flatten(0, 1), stats).view(len(used), NHOODS_PER_IMAGE, -1)
        level = f"swd_{fl.shape[-1]}px"
        known = floors is not None and level in floors
        to_fake, floor = [0.0] * (len(parts) * len(splits)), floors[level] if known else [0.0] * len(splits)
        for directions in _directions(fake_desc.shape[-1], seed + fl.shape[-1], fl.device):
            # (dirs, m * P) per chunk
            fake_sorted = [sorted_rows(fake_desc[c].flatten(0, 1) @ directions) for c in parts]
            real_proj = (real_desc @ directions).view(len(real), NHOODS_PER_IMAGE, -1)  # (images, P, dirs)
            for i, (first_ix, second_ix, against_ix) in enumerate(sides):
                second = sorted_rows(real_proj[second_ix].flatten(0, 1))
                if not known:
                    first = sorted_rows(real_proj[first_ix].flatten(0, 1))
                    floor[i] += float((first - second).abs().mean()) * 1e3 / DIR_REPEATS
                against = second if m == n else sorted_rows(real_proj[against_ix].flatten(0, 1))
                for j, f in enumerate(fake_sorted):
                    to_fake[j * len(splits) + i] += float((f - against).abs().mean()) * 1e3 / DIR_REPEATS
        per_level[level] = (to_fake, floor)
        if floors is not None:
            floors[level] = floor
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
        swd_samples=float(n),
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
    half = len(real) // 2
    k = ndb_bins(half)
    small_real, small_fake = _small(real), _small(fake)
    rows: dict[str, list[float]] = {
        key: [] for key in ("ndb", "ndb_under", "ndb_over", "ndb_js", "ndb_floor", "ndb_js_floor")
    }
    for i, p in enumerate(splits):
        first, second = small_real[p[:half]], small_real[p[half : 2 * half]]
        centres = _kmeans(first, k, seed + i)
        hist = torch.bincount(torch.cdist(first, centres).argmin(1), minlength=k).double() / half
        ndb, under, over, js = _ndb(hist, half, torch.cdist(small_fake, centres).argmin(1), k)
        ndb_floor, _, _, js_floor = _ndb(hist, half, torch.cdist(second, centres).argmin(1), k)
        for key, v in zip(rows, (ndb, under, over, js, ndb_floor, js_floor)):
            rows[key].append(v)
    out = {key: statistics.fmean(v) for key, v in rows.items()}
    out.update(
        ndb_std=statistics.pstdev(rows["ndb"]), ndb_floor_std=statistics.pstdev(rows["ndb_floor"]), ndb_bins=float(k)
    )
    return out
