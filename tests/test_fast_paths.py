"""The fast paths compute what the plain fp32 reference computes: fused optimizer steps, bf16 autocast,
channels_last, and the cifar-fast recipe's pieces (augmentation, whitening, flip TTA, one-cycle schedule)."""

import pytest
import torch
import torch.nn.functional as F

from cnnlab.core import config
from cnnlab.data import datasets
from cnnlab.data.datasets import Split
from cnnlab.data.transforms import augment, gaussian_blur, to_input
from cnnlab.models import presets, specs
from cnnlab.training.optimizers import make_optimizer
from cnnlab.training.trainer import Trainer

SHAPES = {name: datasets.BUILTIN[p["dataset"]]["shape"] for name, p in presets.PRESETS.items()}


def batch(shape, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", ["mlp", "mlp-deep", "mnist-cnn", "cifar-cnn"])
def test_fused_step_matches_the_reference_optimizer(name):
    """Three training steps with the fused optimizer land where torch's reference (for-loop) one does."""
    cfg = presets.preset(name)
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        model, _ = specs.build(cfg.layers, SHAPES[name], 10, cfg.init)
        model.eval()  # no dropout noise: the two runs must see the same function
        if fused:
            opt = make_optimizer(model.parameters(), cfg.optimizer)
            assert opt.defaults["fused"] is True
        else:
            o = cfg.optimizer
            opt = (torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, foreach=False)
                   if o.name == "sgd" else torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.epsilon,
                                                      foreach=False))
        for step in range(3):
            x, y = batch(SHAPES[name], seed=step)
            loss = F.cross_entropy(model(to_input(x, False)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # Rounding only: 1e-5 is 1% of one Adam step at lr 1e-3 (the fused kernel orders the arithmetic its own way).
    assert torch.allclose(results[0], results[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(SHAPES))
def test_bf16_and_channels_last_compute_the_fp32_function(name):
    """Same weights, same images: channels_last gives the fp32 logits to rounding; bf16 autocast stays within
    bf16's precision (8 bits of mantissa) and picks the same class for nearly every image."""
    cfg = presets.preset(name)
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, SHAPES[name], 10, cfg.init)
    x, _ = batch(SHAPES[name], n=64)
    specs.fit_whitening(model, x)
    model.eval()
    with torch.no_grad():
        reference = model(to_input(x, False))
        conv = specs.uses_conv(model)
        if conv:
            model.to(memory_format=torch.channels_last)
        last = model(to_input(x, conv))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(to_input(x, conv)).float()
    scale = reference.abs().max()
    assert (last - reference).abs().max() <= 1e-4 * scale
    assert (low - reference).abs().max() <= 0.1 * scale
    assert (low.argmax(1) == reference.argmax(1)).float().mean() >= 0.9


def test_pooling_before_relu_is_the_same_function_and_gradient():
    """mnist-cnn is built with max-pool before ReLU (cheaper); the layers in the order written give the same
    logits and the same weight gradients, including where a whole pooling window is negative."""
    cfg = presets.preset("mnist-cnn")
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, (1, 28, 28), 10, cfg.init)
    model.eval()
    kinds = [type(m).__name__ for m in model]
    assert kinds[:3] == ["Conv2d", "MaxPool2d", "ReLU"]  # the reordering happened
    literal = [m for m in model]
    for j in range(len(literal) - 1):  # back to the order the spec writes: conv, ReLU, pool
        if isinstance(literal[j], torch.nn.MaxPool2d) and isinstance(literal[j + 1], torch.nn.ReLU):
            literal[j], literal[j + 1] = literal[j + 1], literal[j]
    assert [type(m).__name__ for m in literal][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    x, y = batch((1, 28, 28), n=32)
    grads = []
    for net in (model, torch.nn.Sequential(*literal)):
        model.zero_grad()
        logits = net(to_input(x, False))
        F.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def test_bf16_training_follows_fp32_training(real_data):
    """One epoch of a small CNN on 2,000 real MNIST images in each precision, same seed: the losses agree."""
    ds = datasets.load("mnist", data_dir=str(real_data))
    train, test = Split(ds.train.x[:2000], ds.train.y[:2000]), Split(ds.test.x[:500], ds.test.y[:500])
    layers = [{"type": "conv2d", "filters": 16, "kernel": 5, "activation": "relu"}, {"type": "maxpool"},
              {"type": "flatten"}, {"type": "dense", "units": "classes"}]
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = config.from_dict({"layers": layers, "epochs": 1, "batch_size": 32, "precision": precision,
                                "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
        torch.manual_seed(0)
        model, _ = specs.build(cfg.layers, (1, 28, 28), 10)
        trainer = Trainer(model, cfg, train, test, [], "/nonexistent")
        trainer.save_state = lambda: None  # nothing to save in this comparison
        out[precision] = trainer.fit()[-1]
    assert abs(out["bf16"]["loss"] - out["fp32"]["loss"]) < 0.05 * out["fp32"]["loss"]
    assert abs(out["bf16"]["val_accuracy"] - out["fp32"]["val_accuracy"]) <= 0.02
    assert out["fp32"]["val_accuracy"] > 0.85  # it learned, so the comparison means something


def test_augment_flips_and_shifts_the_images_themselves():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(2, 3, 8, 8)
    assert torch.equal(augment(x, False, 0), x)
    torch.manual_seed(0)
    flipped = augment(x.repeat(50, 1, 1, 1), True, 0)
    is_mirror = [torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x.repeat(50, 1, 1, 1))]
    is_same = [torch.equal(f, o) for f, o in zip(flipped, x.repeat(50, 1, 1, 1))]
    assert all(a or b for a, b in zip(is_mirror, is_same)) and 10 < sum(is_mirror) < 90
    shifted = augment(x.repeat(50, 1, 1, 1), False, 2)
    assert shifted.shape == (100, 3, 8, 8) and shifted.dtype == torch.uint8
    # every shifted image holds the original's centre 4x4 somewhere within 2 pixels of where it was
    for s, o in zip(shifted, x.repeat(50, 1, 1, 1)):
        assert any(torch.equal(s[:, 2 + dy:6 + dy, 2 + dx:6 + dx], o[:, 2:6, 2:6])
                   for dy in range(-2, 3) for dx in range(-2, 3))
    assert sum(not torch.equal(s, o) for s, o in zip(shifted, x.repeat(50, 1, 1, 1))) > 50


def test_gaussian_blur_is_a_normalised_gaussian_per_image():
    dot = torch.zeros(3, 1, 9, 9, dtype=torch.uint8)
    dot[:, :, 4, 4] = 200
    out = gaussian_blur(dot, torch.tensor([0.0, 0.5, 1.0])).float()
    assert torch.equal(out[0], dot[0].float())  # sigma 0: untouched
    for image, sigma in ((out[1], 0.5), (out[2], 1.0)):
        taps = torch.exp(-torch.arange(-2.0, 3.0) ** 2 / (2 * sigma ** 2))
        taps = taps / taps.sum()
        want = 200 * torch.outer(taps, taps)  # separable Gaussian, weights summing to 1
        assert (image[0, 2:7, 2:7] - want).abs().max() <= 0.5  # rounding to uint8 only
        assert image.sum() == pytest.approx(200, abs=13)  # brightness kept (up to 25 roundings)
    assert out[2][0, 4, 4] < out[1][0, 4, 4] < 200  # wider sigma, flatter peak
    flat = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(gaussian_blur(flat, torch.tensor([0.7, 1.0])), flat)  # borders reflect: nothing leaks in


def test_augment_blurs_each_image_by_its_own_amount():
    torch.manual_seed(0)
    stripes = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    stripes[:, :, :, ::2] = 255
    blurred = augment(stripes, False, 0, blur=1.0)
    contrast = (blurred[:, 0, 4, 4].float() - blurred[:, 0, 4, 5].float()).abs()
    assert contrast.max() > 200 and contrast.min() < 100  # sigma drawn per image, from ~0 to ~1 pixel
    assert len(contrast.unique()) > 20


def test_whitening_decorrelates_the_training_patches():
    torch.manual_seed(0)
    smooth = F.avg_pool2d(torch.rand(400, 3, 34, 34), 3, 1)  # correlated neighbouring pixels, like photos
    images = (smooth * 255).to(torch.uint8)
    model, infos = specs.build([{"type": "whiten", "kernel": 2}, {"type": "flatten"},
                                 {"type": "dense", "units": "classes"}], (3, 32, 32), 10)
    specs.fit_whitening(model, images)
    whiten = model[0]
    assert not whiten.weight.requires_grad and infos[0].params == 24 and infos[0].buffers == 288
    with torch.no_grad():
        out = whiten(images.float() / 255)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(out.T)
    off_diagonal = cov - torch.diag(cov.diag())
    assert off_diagonal.abs().max() < 0.01  # decorrelated
    # unit variance, shrunk only along the faintest directions by the eps that keeps noise from being amplified
    assert (cov.diag() <= 1.01).all() and (cov.diag() > 0.5).all() and (cov.diag() > 0.9).sum() >= 9


def test_flip_tta_averages_the_mirror_at_evaluation_only():
    layers = [{"type": "flip_tta"}, {"type": "flatten"}, {"type": "dense", "units": "classes"}]
    torch.manual_seed(0)
    model, _ = specs.build(layers, (1, 4, 4), 3)
    plain = torch.nn.Sequential(*model)  # the same layers, no averaging
    x = torch.rand(5, 1, 4, 4)
    assert torch.equal(model.train()(x), plain(x))
    assert torch.allclose(model.eval()(x), (plain(x) + plain(x.flip(-1))) / 2)
    assert set(model.state_dict()) == set(plain.state_dict())  # the same file format as any Sequential


def test_onecycle_warms_up_then_decays_to_zero():
    cfg = config.from_dict({"layers": [{"type": "flatten"}, {"type": "dense", "units": "classes"}], "epochs": 4,
                            "batch_size": 10, "lr_schedule": "onecycle", "warmup_epochs": 1,
                            "optimizer": {"name": "sgd", "lr": 0.4}})
    model, _ = specs.build(cfg.layers, (1, 2, 2), 2)
    data = Split(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), torch.zeros(100, dtype=torch.int64))
    trainer = Trainer(model, cfg, data, None, [], "/nonexistent")
    lrs = []
    for step in range(40):
        trainer.step = step
        lrs.append(trainer.current_lr())
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10])) and all(a > b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[10] == pytest.approx(0.4)  # the warm-up's last step and the decay's first are the peak
    assert lrs[-1] == pytest.approx(0.4 / 30)
