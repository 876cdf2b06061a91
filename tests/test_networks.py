"""The networks are the lecture's, layer for layer, and behave at every supported size."""

import pytest
import torch
from torch import nn

from ganlab.nets import r3gan
from ganlab.nets.archs import generator_for
from ganlab.nets.dcgan import SUPPORTED_SIZES, Discriminator, Generator, init_dcgan_, recalibrate_batchnorm
from ganlab.nets.factory import networks
from ganlab.nets.projected import FeaturesAndPixels, ProjectedDiscriminator

LATENT = 128


def lecture_generator() -> nn.Sequential:
    """The slide's cell [11], with the arguments the slide cuts off (padding, bias=False)."""
    return nn.Sequential(
        nn.ConvTranspose2d(LATENT, 512, kernel_size=4, stride=1, padding=0, bias=False),
        nn.BatchNorm2d(512),
        nn.ReLU(True),
        nn.ConvTranspose2d(512, 256, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(True),
        nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(True),
        nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(True),
        nn.ConvTranspose2d(32, 3, kernel_size=4, stride=2, padding=1, bias=False),
        nn.Tanh(),
    )


def lecture_discriminator() -> nn.Sequential:
    """The slide's cell [15]."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, 128, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(128, 256, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(256, 512, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(512),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(512, 1024, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(1024),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(1024, 1, kernel_size=4, stride=1, padding=0, bias=False),
        nn.Flatten(),
        nn.Sigmoid(),
    )


def _layers(model: nn.Module) -> list[str]:
    return [repr(m) for m in model.children()]


def test_generator_is_the_lecture_generator_at_128px():
    ours, theirs = Generator(LATENT, 128, 32), lecture_generator()
    assert _layers(ours) == _layers(theirs)
    init_dcgan_(ours)
    theirs.load_state_dict(ours.state_dict())  # same keys, same shapes
    ours.eval(), theirs.eval()
    z = torch.randn(4, LATENT, 1, 1)
    torch.testing.assert_close(ours(z), theirs(z))
    torch.testing.assert_close(ours(z.flatten(1)), theirs(z))  # (N, L) latents are accepted too


def test_discriminator_is_the_lecture_discriminator_at_128px():
    ours, theirs = Discriminator(128, 64), lecture_discriminator()
    assert _layers(ours) == _layers(theirs)[:-1]  # ours stops at the logit; the Sigmoid lives in the loss
    init_dcgan_(ours)
    theirs.load_state_dict(ours.state_dict())
    ours.eval(), theirs.eval()
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    torch.testing.assert_close(torch.sigmoid(ours(x)), theirs(x).flatten())


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_shapes_and_ranges_at_every_size(size):
    G, D = Generator(16, size, 8), Discriminator(size, 8)
    images = G(torch.randn(2, 16) * 3)
    assert images.shape == (2, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images).shape == (2,)


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_the_modern_nets_have_the_lecture_nets_shapes_and_widths_at_every_size(size):
    G, D = networks("r3gan", "dcgan", 16, size, 8, 8, False)
    images = G(torch.randn(2, 16))
    assert images.shape == (2, 3, size, size) and D(images).shape == (2,)
    lecture_widths = [m.out_channels for m in Generator(16, size, 8) if isinstance(m, nn.ConvTranspose2d)][:-1]
    assert [b.narrow.out_channels for b in G.blocks] == lecture_widths  # 4 px ... size / 2
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in (*G.modules(), *D.modules()))


def test_every_residual_block_of_the_modern_nets_starts_as_the_identity():
    """Fix-up initialisation: the branch's last layer is zero, so depth adds no variance at the start."""
    G, D = networks("r3gan", "dcgan", 16, 64, 8, 8, False)
    block = G.blocks[1]
    x = torch.randn(2, block.narrow.out_channels, 8, 8)
    assert torch.equal(block(x), x)
    assert all(torch.count_nonzero(b.narrow.weight) == 0 for b in (*G.blocks, *D.blocks))
    assert all(torch.count_nonzero(b.widen.weight) > 0 for b in (*G.blocks, *D.blocks))


def test_a_checkpoint_rebuilds_the_generator_of_its_arch():
    G, _ = networks("r3gan", "dcgan", 16, 32, 8, 8, False)
    rebuilt = generator_for({"arch": "r3gan", "latent_size": 16, "image_size": 32, "g_width": 8})
    rebuilt.load_state_dict(G.state_dict())
    z = torch.randn(3, 16)
    assert isinstance(rebuilt, r3gan.Generator) and torch.equal(rebuilt(z), G(z))
    lecture = generator_for({"latent_size": 16, "image_size": 32, "g_width": 8})  # written before model.arch
    assert isinstance(lecture, Generator)


@pytest.mark.slow
@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_projected_discriminator_gives_one_logit_per_scale_at_every_size(size):
    assert ProjectedDiscriminator(size, 8)(torch.rand(2, 3, size, size) * 2 - 1).shape == (2, 4)


@pytest.mark.slow
def test_projected_discriminator_learns_only_its_heads_and_teaches_g_through_the_frozen_network():
    torch.manual_seed(0)
    D = ProjectedDiscriminator(64, 8).train()
    pretrained = {k: v.clone() for k, v in D.backbone.state_dict().items()}
    x = (torch.rand(4, 3, 64, 64) * 2 - 1).requires_grad_(True)
    D(x).sum().backward()
    assert x.grad.abs().sum() > 0  # G's gradient flows through the frozen network
    trainable = [n for n, p in D.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("heads.") for n in trainable)
    assert all(p.grad is not None for n, p in D.named_parameters() if p.requires_grad)
    assert all(
        torch.equal(v, D.backbone.state_dict()[k]) for k, v in pretrained.items()
    )  # ImageNet's BN statistics, kept
    assert not any(k.startswith("backbone") for k in D.state_dict())  # the pretrained weights come from their package

    torch.manual_seed(1)  # other random projections and heads: the state_dict carries them all
    other = ProjectedDiscriminator(64, 8)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert not torch.equal(other.eval()(x), D.eval()(x))
    other.load_state_dict(D.state_dict())
    torch.testing.assert_close(other(x), D(x), rtol=0, atol=0)


@pytest.mark.slow
def test_pixel_and_feature_discriminators_weigh_equally_and_both_learn():
    torch.manual_seed(0)
    D = FeaturesAndPixels(
        ProjectedDiscriminator(64, 8), Discriminator(64, 8)
    ).eval()  # eval: spectral norm's power step is not taken
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    logits = D(x)
    assert logits.shape == (4, 8)
    torch.testing.assert_close(logits[:, :4], D.features(x), rtol=0, atol=0)
    assert (
        logits[:, 4:] == D.pixels(x)[:, None]
    ).all()  # the pixel D's logit fills half the columns: half the mean loss
    D.train()(x).mean().backward()
    trainable = {n: p for n, p in D.named_parameters() if p.requires_grad}
    assert any(n.startswith("pixels.") for n in trainable) and any(n.startswith("features.heads.") for n in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


@pytest.mark.slow
def test_the_shallow_variant_judges_the_two_shallow_scales_beside_the_pixels():
    torch.manual_seed(0)
    G, D = networks("dcgan", "dcgan+shallow", 16, 64, 4, 8, False)
    assert len(D.features.backbone) == 2 and len(D.features.heads) == 2  # the deep stages are not even run
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    deep = ProjectedDiscriminator(64, 8)
    with torch.no_grad():
        for shallow_stage, full_stage in zip(D.features.backbone, deep.backbone):
            torch.testing.assert_close(shallow_stage(x), full_stage(x), rtol=0, atol=0)  # the same pretrained stages
            x = shallow_stage(x)
    logits = D.eval()(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert logits.shape == (3, 4) and (logits[:, 2:] == logits[:, 2:3]).all()  # half the columns are the pixel D's


def test_unsupported_size_is_refused():
    with pytest.raises(ValueError, match="48"):
        Generator(16, 48)


def test_dcgan_init_statistics():
    G = Generator(LATENT, 128, 32)
    init_dcgan_(G)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3
    bn = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean() - 1) < 0.01


def test_recalibrated_generator_makes_each_image_independent_of_its_batch():
    G = Generator(16, 32, 8)
    init_dcgan_(G)
    recalibrate_batchnorm(G, batches=2, batch_size=32)
    assert not G.training
    z = torch.randn(5, 16)
    with torch.no_grad():
        batch = G(z)
        one_by_one = torch.cat([G(z[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, one_by_one, rtol=1e-4, atol=1e-5)
