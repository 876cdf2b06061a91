"""Augmentation, EMA, hinge, R1 and spectral norm do what their papers say, on known values."""

import contextlib

import pytest
import torch
from torch import nn

from ganlab import hooks, layout
from ganlab.io import checkpoint
from ganlab.nets.dcgan import Discriminator, init_dcgan_
from ganlab.training import augment
from ganlab.training.clock import Clock
from ganlab.training.ema import make_ema, update_ema
from ganlab.training.loop import build, divergence, train_steps
from ganlab.training.loss import (
    LOSSES,
    gradient_penalty,
    hinge_discriminator_loss,
    hinge_generator_loss,
    objective,
)
from ganlab.training.state import Streams
from stages import prepare, train
from tests.conftest import interrupt_at_tick, tiny


@pytest.mark.parametrize("policy", augment.POLICIES)
def test_each_augmentation_keeps_shape_and_range_and_is_differentiable(policy):
    rng = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = augment.diff_augment(x, [policy], rng)
    assert y.shape == x.shape
    if policy != "color":  # colour jitter may leave [-1, 1], as in the paper; the others only move or zero pixels
        assert y.min() >= -1 and y.max() <= 1
    assert not torch.equal(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_and_cutout_move_or_zero_pixels():
    rng = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32) + 0.5  # strictly positive, so zeros show what was removed
    cut = augment.cutout(x, rng)
    zeroed = (cut == 0).all(dim=1).float().mean(dim=(1, 2))
    assert ((zeroed > 0.05) & (zeroed <= 0.25)).all()  # a 16 x 16 square of 32 x 32, clipped at the borders
    moved = augment.translation(x, rng)
    assert torch.isin(moved[moved != 0], x).all()  # pixels are moved, never invented


def test_flip_mirrors_about_half():
    rng = torch.Generator().manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(400, 3, 1, 1)
    flipped = augment.random_flip(x, rng)
    is_flipped = (flipped == x.flip(3)).all(dim=(1, 2, 3))
    assert (is_flipped | (flipped == x).all(dim=(1, 2, 3))).all() and 150 < is_flipped.sum() < 250


def test_adaptive_strength_applies_each_transform_to_a_share_p_and_follows_r_t():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, 16, 16) * 2 - 1
    assert torch.equal(augment.diff_augment(x, ["cutout"], rng, torch.tensor(0.0)), x)
    cut = augment.diff_augment(x, ["cutout"], rng, torch.tensor(0.25))
    changed = (cut != x).flatten(1).any(1).float().mean()
    assert 0.18 < changed < 0.32  # a quarter of the images, each cut
    assert (augment.diff_augment(x, ["cutout"], rng, torch.tensor(1.0)) != x).flatten(1).any(1).all()

    p = torch.tensor(0.5)
    logits = torch.tensor([1.0, 2.0, 3.0, -1.0])  # r_t = 0.5: below a target of 0.6, p falls
    augment.adapt_(p, augment.sign_agreement(logits), 0.6, 1000, 10)
    assert p.item() == pytest.approx(0.4)
    augment.adapt_(p, augment.sign_agreement(torch.ones(8)), 0.6, 100_000, 10)  # far above: clamped at 1
    assert p.item() == 1.0


def test_ema_update_math():
    g = nn.Linear(2, 1, bias=False)
    ema = make_ema(g)
    with torch.no_grad():
        g.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    update_ema(ema, g, decay=0.9, step=1000)  # ramp finished: d = 0.9
    torch.testing.assert_close(ema.weight, torch.full((1, 2), 0.1))
    update_ema(ema, g, decay=0.9, step=0)  # ramp: d = 1/10
    torch.testing.assert_close(ema.weight, torch.full((1, 2), 0.1 * 0.1 + 0.9))


def test_hinge_losses_on_known_values():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3; relu(1 + fake) = [0, 1, 2] -> 1
    torch.testing.assert_close(hinge_discriminator_loss(real, fake), torch.tensor(2.5 / 3 + 1.0))
    torch.testing.assert_close(hinge_generator_loss(fake), torch.tensor(1 / 3))


def test_the_pairing_loss_scores_each_real_against_its_fake():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    rp = LOSSES["rpgan"]
    softplus = torch.nn.functional.softplus
    # D: softplus(fake - real) = softplus([-2, 1]); G: softplus(real - fake) = softplus([2, -1])
    torch.testing.assert_close(rp.d(real, fake), softplus(torch.tensor([-2.0, 1.0])).mean())
    torch.testing.assert_close(rp.g(fake, real), softplus(torch.tensor([2.0, -1.0])).mean())
    torch.testing.assert_close(rp.d(real + 5, fake + 5), rp.d(real, fake))  # relativistic: only differences count
    assert rp.pairs and not LOSSES["bce"].pairs


def test_both_scores_near_zero_is_divergence_for_bce_but_not_for_the_pairing_loss():
    """RpGAN reads only D(x) - D(G(z)): the level of both drifts freely, and a D scoring every image
    near 0 with reals well above fakes is healthy there; loss_d above 10 is divergence for both."""
    calm = [{"kimg": k, "loss_d": 0.31, "real_score": 0.0024, "fake_score": 0.0004} for k in (22.0, 24.8)]
    assert divergence(calm, 0.001) is not None and divergence(calm, 0.001, paired=True) is None
    lost = [{**r, "loss_d": 12.0} for r in calm]
    assert "loss_d above 10" in divergence(lost, 0.001, paired=True)


def test_each_arch_trains_with_its_own_loss_unless_train_loss_says_otherwise():
    assert objective("dcgan", tiny().train) == (LOSSES["bce"], 0.0, 0.0)  # the lecture's
    loss, r1, r2 = objective("r3gan", tiny().train)
    assert loss is LOSSES["rpgan"] and r1 == r2 > 0
    assert objective("r3gan", tiny(train={"loss": "bce", "r2_gamma": 0}).train)[::2] == (LOSSES["bce"], 0.0)


class _Linear(nn.Module):
    """D(x) = <w, x>: dD/dx = w for every image, so R1 = R2 = ||w||^2."""

    def __init__(self, size: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3 * size * size))

    def forward(self, x):
        return x.flatten(1).float() @ self.w


@pytest.mark.parametrize("r1, r2", [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0)])
def test_r1_and_r2_add_gamma_times_w_to_a_linear_ds_gradient(r1, r2):
    """With D(x) = <w, x>, (gamma / 2) ||dD/dx||^2 has the gradient gamma w: R1 on reals and R2 on
    fakes each add exactly that to D's gradient, every ``r1_every`` steps and scaled by it (lazy)."""
    t = tiny(
        train={
            "diffaugment": [],
            "flip": False,
            "loss": "rpgan",
            "r1_gamma": r1,
            "r2_gamma": r2,
            "r1_every": 2,
            "kimg": 0.016,
        }
    ).train
    grads, reals = {}, torch.rand(16, 3, 32, 32) * 2 - 1
    for gammas in ((0.0, 0.0), (r1, r2)):
        run = t.model_copy(update={"r1_gamma": gammas[0], "r2_gamma": gammas[1]})
        gan = build(
            tiny().model,
            run,
            32,
            torch.device("cpu"),
            seed=0,
        )
        torch.manual_seed(1)
        gan.D = _Linear(32)
        gan.opt_d = torch.optim.SGD(gan.D.parameters(), lr=0.0)
        w = gan.D.w.detach().clone()
        gan.opt_d.register_step_pre_hook(lambda opt, *_, key=gammas, D=gan.D: grads.__setitem__(key, D.w.grad.clone()))
        data = type("Data", (), {"batch": lambda self, idx: reals[: len(idx)]})()
        clock = Clock.of(run, 40)
        train_steps(gan, data, run, clock, Streams.seeded(0, torch.device("cpu")), 0, 1, contextlib.nullcontext)
    torch.testing.assert_close(grads[(r1, r2)] - grads[(0.0, 0.0)], (r1 + r2) * t.r1_every * w, rtol=1e-4, atol=1e-5)


def test_r1_penalty_on_a_known_function():
    x = torch.randn(5, 1, 2, 2, requires_grad=True)
    logits = (3.0 * x).sum(dim=(1, 2, 3))  # dD/dx = 3 everywhere: ||grad||^2 = 9 * 4 = 36
    torch.testing.assert_close(gradient_penalty(logits, x), torch.tensor(36.0))


def test_spectral_norm_keeps_each_conv_at_unit_norm():
    D = Discriminator(32, 8, spectral_norm=True)
    init_dcgan_(D)
    D.train()
    for _ in range(30):  # power iteration converges over forward passes
        D(torch.randn(4, 3, 32, 32))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert abs(sigma - 1) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, discriminator",
    [("dcgan", d) for d in ("dcgan", "projected", "dcgan+projected", "dcgan+shallow")]
    + [("resize", "dcgan"), ("r3gan", "dcgan")],
)
def test_all_options_train_and_resume_exactly(workdir, monkeypatch, arch, discriminator):
    options = {
        "kimg": 0.064,
        "checkpoint_kimg": 0.032,
        "diffaugment": ["color", "translation", "cutout"],
        "flip": True,
        "ema": 0.99,
        "ada_target": 0.6,
        "ada_kimg": 0.1,
        "loss": "hinge",
        "r1_gamma": 1.0,
        "r1_every": 2,
        "lr_g": 0.002,
        "lr_d": 0.001,
    }
    if arch != "dcgan":  # each with its own loss, R1 and R2 (r3gan's D takes no spectral norm)
        options.update(loss=None, r1_gamma=None, r2_gamma=None)
    model = {"d_spectral_norm": arch != "r3gan", "discriminator": discriminator, "arch": arch}
    params = tiny(train=options, model=model)
    prepare.run(params)
    train.run(params)
    straight = checkpoint.load(layout.CHECKPOINT)
    assert straight["ema"] is not None and all(torch.isfinite(v).all() for v in straight["ema"].values())
    layout.CHECKPOINT.unlink()

    real_append = interrupt_at_tick(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    assert checkpoint.load(layout.CHECKPOINT)["step"] == 2
    p = checkpoint.load(layout.CHECKPOINT)["augment_p"]
    assert (
        (0 < p <= 1) if (arch, discriminator) == ("dcgan", "dcgan") else (0 <= p <= 1)
    )  # ADA moved (the projected D starts below target) and is kept
    monkeypatch.setattr(hooks, "append_history", real_append)
    train.run(params)
    resumed = checkpoint.load(layout.CHECKPOINT)
    for key in ("generator", "discriminator", "ema", "generator_eval"):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name}"
    assert torch.equal(straight["augment_p"], resumed["augment_p"])
