"""Numbers that say how good a generator is: distances in ImageNet features (Fréchet, kernel,
precision/recall), attribute fidelity, memorisation, and the standard FID/KID when their
InceptionV3 weights are on the machine.

Each function takes image tensors in [-1, 1], all on one device, and returns plain floats, so
they go to metrics.json and MLflow unchanged.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from torch import nn

from ganlab.data.dataset import CLASS
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.metrics.attributes import AttributeNet, metric_names, predict

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID InceptionV3


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(0.5 * (p - q).abs().sum())


def attribute_fidelity(
    net: AttributeNet, generated: torch.Tensor, real: torch.Tensor, confident: float = 0.9
) -> dict[str, float]:
    """Per attribute: total variation between the attribute mix the classifier sees in
    generated and in real images (0 = same mix, 1 = disjoint), and the share of generated
    images it classifies with probability >= ``confident``. Comparing predictions on both
    sides cancels the classifier's own bias. For the attribute ``class`` (a folder of class
    subfolders) also the class mix itself: ``class_share/<name>`` of the samples and
    ``class_share_real/<name>`` of the real images."""
    return fidelity_of(net, predict(net, generated), predict(net, real), confident)


def fidelity_of(
    net: AttributeNet, pg: dict[str, torch.Tensor], pr: dict[str, torch.Tensor], confident: float = 0.9
) -> dict[str, float]:
    """:func:`attribute_fidelity` from the classifier's probabilities for the generated (``pg``,
    gathered chunk by chunk of samples) and the real images (``pr``)."""
    out: dict[str, float] = {}
    first = next(iter(pg.values()))
    n_g, n_r, device = len(first), len(next(iter(pr.values()))), first.device
    all_g = torch.ones(n_g, dtype=torch.bool, device=device)
    all_r = torch.ones(n_r, dtype=torch.bool, device=device)
    for a in pg:
        k = pg[a].shape[1]
        hist_g = torch.bincount(pg[a].argmax(1), minlength=k).float() / n_g
        hist_r = torch.bincount(pr[a].argmax(1), minlength=k).float() / n_r
        sure_g, sure_r = pg[a].max(1).values >= confident, pr[a].max(1).values >= confident
        all_g &= sure_g
        all_r &= sure_r
        out[f"attr_tv/{a}"] = total_variation(hist_g, hist_r)
        out[f"attr_confident/{a}"] = float(sure_g.float().mean())
        out[f"attr_confident_real/{a}"] = float(sure_r.float().mean())
        if a == CLASS:
            for key, share_g, share_r in zip(
                metric_names(net.names.get(a) or [str(i) for i in range(k)]), hist_g.tolist(), hist_r.tolist()
            ):
                out[f"class_share/{key}"], out[f"class_share_real/{key}"] = share_g, share_r

    def mean(prefix):
        return sum(v for key, v in out.items() if key.startswith(prefix)) / len(pg)

    out["attr_tv_mean"] = mean("attr_tv/")
    out["attr_confident_mean"] = mean("attr_confident/")
    out["attr_confident_mean_real"] = mean("attr_confident_real/")  # the same measure on training images: the ceiling
    out["attr_confident_all"] = float(all_g.float().mean())
    out["attr_confident_all_real"] = float(all_r.float().mean())
    return out


BLOCK_ELEMENTS = 2**24  # distances held at a time (64 MB of float32): a whole matrix over 50000 samples was 10 GB


def _block_rows(columns: int) -> int:
    """Rows of a distance matrix with ``columns`` columns that fit in ``BLOCK_ELEMENTS``."""
    return max(1, BLOCK_ELEMENTS // max(1, columns))


def nearest(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance from each row of ``a`` to its nearest row of ``b`` (RMS over pixels), and its index.

    In blocks of rows of ``a``: the whole matrix grew with the product of the two counts."""
    b = b.flatten(1).float()
    step, scale = _block_rows(len(b)), b.shape[1] ** 0.5
    dist, index = [], []
    for start in range(0, len(a), step):
        d = torch.cdist(a[start : start + step].flatten(1).float(), b) / scale
        if exclude_self:
            rows = torch.arange(len(d), device=d.device)
            d[rows, rows + start] = float("inf")
        low = d.min(dim=1)
        dist.append(low.values)
        index.append(low.indices)
    return torch.cat(dist), torch.cat(index)


def memorisation(generated: torch.Tensor, real: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """How close samples are to their nearest training image, against how close training
    images are to each other. ``nn_ratio`` ~ 1: as novel as a fresh draw of the data;
    << 1: copies; >> 1: far from every training image (poor samples). ``copy_share``: samples
    closer to a training image than half the median training-to-training distance."""
    d_gen, idx = nearest(generated, real)
    return memorisation_of(d_gen, real), torch.stack([d_gen, idx.float()], dim=1)


def memorisation_of(d_gen: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """:func:`memorisation` from each sample's distance to its nearest training image, gathered
    chunk by chunk (the evaluation never holds all of its samples)."""
    if len(real) < 2:  # no distance between training images to compare with: 0 and 1 would read as copies
        nan = float("nan")
        return {
            "nn_dist_gen_median": float(d_gen.median()),
            "nn_dist_real_median": nan,
            "nn_ratio": nan,
            "copy_share": nan,
        }
    d_real, _ = nearest(real, real, exclude_self=True)
    median_real = float(d_real.median())
    out = {
        "nn_dist_gen_median": float(d_gen.median()),
        "nn_dist_real_median": median_real,
        "nn_ratio": float(d_gen.median()) / median_real if median_real > 0 else float("inf"),
        "copy_share": float((d_gen < 0.5 * median_real).float().mean()),
    }
    return out


def inception_path(setting: str) -> Path | None:
    """The FID weights: the path in params, else torch's download cache; None if neither."""
    if setting and setting != "download":
        return Path(setting)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


def _plain_copy(path: Path, folder: Path) -> Path:
    """The weights file re-saved from a ``weights_only`` load: torch-fidelity opens its weights with
    ``torch.load(weights_only=False)``, which would run any code pickled into a stranger's file;
    it gets this copy, which holds tensors and nothing else, or the file is refused."""
    copy = folder / INCEPTION_FILE
    torch.save(checkpoint.load(path, missing="evaluate.inception_weights: file not found"), copy)
    return copy


def fid_kid(
    generated: torch.Tensor, real: torch.Tensor, weights: str, feature: nn.Module | None = None, kid_subset: int = 100
) -> tuple[dict[str, float], str]:
    """FID and KID with torchmetrics. Returns ({}, reason) when the InceptionV3 weights are not
    on this machine: an offline machine cannot download them, and the stage must still work.
    ``feature`` replaces InceptionV3 (tests use a small stand-in network)."""
    scores, reason = InceptionScores.open(real, len(generated), weights, feature, kid_subset)
    if scores is None:
        return {}, reason
    scores.add(generated)
    return scores.result(), ""


# KID's features kept a side: its 100 subsets of at most 100 draw no more than this many; every
# sample's (8 KB each) took 400 MB at 50000. The same KID up to this many samples.
KID_POOL = 10_000


class InceptionScores:
    """FID and KID of samples that arrive in chunks (:meth:`add`): torchmetrics keeps FID's sums
    and the features of KID's first ``KID_POOL`` images a side, never the images."""

    def __init__(self, fid: nn.Module, kid: nn.Module):
        self.fid, self.kid = fid, kid
        self.pooled = {True: 0, False: 0}  # images given to KID: real, generated

    @classmethod
    def open(
        cls, real: torch.Tensor, count: int, weights: str, feature: nn.Module | None = None, kid_subset: int = 100
    ) -> tuple[InceptionScores | None, str]:
        """The metrics with ``real`` added, for ``count`` samples to come; (None, reason) when unavailable."""
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        if feature is None:
            path = inception_path(weights)
            if path is None and weights != "download":
                return None, (
                    f"InceptionV3 weights not found (offline?): set evaluate.inception_weights to a local copy of {INCEPTION_FILE}, "
                    "or to 'download' where the internet is reachable"
                )
            if path is not None and not path.is_file():
                return None, f"evaluate.inception_weights: {path} does not exist"
        with tempfile.TemporaryDirectory() as tmp:
            if feature is None:
                try:
                    kwargs = {
                        "feature": 2048,
                        "feature_extractor_weights_path": str(_plain_copy(path, Path(tmp))) if path else None,
                    }
                except UserError as e:
                    return None, f"FID/KID unavailable: {e}"
            else:
                kwargs = {"feature": feature}
            try:
                fid = FrechetInceptionDistance(normalize=True, **kwargs)
                kid = KernelInceptionDistance(normalize=True, subset_size=min(kid_subset, count, len(real)), **kwargs)
            except Exception as e:  # noqa: BLE001 - a failed download or a bad weights file is reported, not fatal
                return None, f"FID/KID unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        scores = cls(fid, kid)
        for metric in (fid, kid):
            metric.to(real.device)
        scores._update(real, is_real=True)
        return scores, ""

    def _update(self, images: torch.Tensor, is_real: bool) -> None:
        pooled = images[: KID_POOL - self.pooled[is_real]]
        self.pooled[is_real] += len(pooled)
        for metric, some in ((self.fid, images), (self.kid, pooled)):
            for chunk in some.split(100):
                metric.update(((chunk.float() + 1) / 2).clamp(0, 1), real=is_real)

    def add(self, generated: torch.Tensor) -> None:
        self._update(generated, is_real=False)

    def result(self) -> dict[str, float]:
        kid_mean, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "inception_kid": float(kid_mean), "inception_kid_std": float(kid_std)}


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    Exact, without a matrix square root: Tr sqrt(S_a S_b) is the nuclear norm of the centred
    cross product A_c B_c^T over sqrt((n_a - 1)(n_b - 1)) (the eigenvalues of S_a S_b are the
    squared singular values of that product), which is cheap and stable for the few hundred
    images our users have, even in 1280 dimensions.
    """
    a, b = a.double(), b.double()
    ac, bc = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    cross = torch.linalg.matrix_norm(ac @ bc.T, ord="nuc") / math.sqrt(na * nb)
    value = (a.mean(0) - b.mean(0)).square().sum() + ac.square().sum() / na + bc.square().sum() / nb - 2 * cross
    return max(float(value), 0.0)


def kernel_distance(
    a: torch.Tensor, b: torch.Tensor, subsets: int = 50, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel, over
    random subsets (of ``subset_size``, or half the smaller set where that is smaller, so that
    the subsets differ and their spread means something); returns its mean and standard deviation."""
    a, b = a.float(), b.float()
    d, m = a.shape[1], min(subset_size, max(2, min(len(a), len(b)) // 2))
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:m].to(a.device)]
        y = b[torch.randperm(len(b), generator=g)[:m].to(b.device)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = m * (m - 1)
        values.append(
            (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off - 2 * kxy.mean()
        )
    v = torch.stack(values)
    return float(v.mean()), float(v.std()) if subsets > 1 else 0.0


def kth_neighbour(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (the first is the row itself),
    in blocks of rows: the whole (N, N) matrix, and the copy that ``kthvalue`` took of it, were
    20 GB at 50000 samples. ``topk`` finds the same value 10x faster than ``kthvalue``."""
    step = _block_rows(len(x))
    return torch.cat(
        [
            torch.cdist(x[i : i + step], x).topk(k + 1, dim=1, largest=False).values[:, -1]
            for i in range(0, len(x), step)
        ]
    )


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): the share of fake samples inside
    the real manifold (the union of balls reaching each real sample's k-th nearest real
    neighbour), and the share of real samples inside the fake manifold. A collapsed generator
    has high precision and a recall near 0.

    Every distance matrix in blocks of rows (``BLOCK_ELEMENTS``), in bounded memory at any
    number of samples; one pass over the fake-to-real distances gives both shares."""
    real, fake = real.float(), fake.float()
    radius_real, radius_fake = kth_neighbour(real, k), kth_neighbour(fake, k)
    in_real = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    step = _block_rows(len(real))
    for i in range(0, len(fake), step):
        between = torch.cdist(fake[i : i + step], real)
        in_real[i : i + step] = (between <= radius_real[None, :]).any(dim=1)
        in_fake |= (between <= radius_fake[i : i + step, None]).any(dim=0)
    return float(in_real.float().mean()), float(in_fake.float().mean())
