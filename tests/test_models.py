import pytest

import cnnlab
from cnnlab.core.errors import CnnlabError
from cnnlab.models import presets, specs


@pytest.mark.parametrize("name, shape, trainable, total", [
    ("mlp", (3, 32, 32), 3_157_002, 3_157_002),
    ("mlp-deep", (3, 32, 32), 3_805_450, 3_805_450),
    ("mnist-cnn", (1, 28, 28), 538_698, 538_698),
    ("cifar-cnn", (3, 32, 32), 551_722, 552_874),
])
def test_parameter_counts_equal_keras(name, shape, trainable, total):
    model, infos = specs.build(presets.preset(name).layers, shape, 10)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    s = cnnlab.summary(name, input_shape=shape)
    assert (s.trainable_params, s.params) == (trainable, total) and len(s.rows) == len(infos)
    assert f"Trainable params: {trainable:,}" in str(s) and f"Total params: {total:,}" in str(s)


def test_mnist_cnn_on_too_small_images_names_the_layer():
    with pytest.raises(CnnlabError, match=r"layer 4 \(conv2d\).*5x5 'valid' kernel.*gets 4x4"):
        specs.build(presets.preset("mnist-cnn").layers, (1, 16, 16), 10)


@pytest.mark.parametrize("layers, message", [
    ([{"type": "dense", "units": 10}], "needs a flat input"),
    ([{"type": "flatten"}, {"type": "dense", "units": 7}], "data set has 10 classes"),
    ([{"type": "conv3d"}], "type must be one of"),
    ([{"type": "flatten"}, {"type": "dense", "units": "many"}], "units must be an integer"),
    ([{"type": "flatten"}, {"type": "dense", "units": 10, "actvation": "relu"}], "unknown key"),
    ([{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "swoosh"}], "unknown activation"),
])
def test_bad_specs(layers, message):
    with pytest.raises(CnnlabError, match=message):
        specs.build(layers, (1, 8, 8), 10)


def test_flops_of_a_conv():
    _, infos = specs.build([{"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
                             {"type": "flatten"}, {"type": "dense", "units": "classes"}], (2, 5, 5), 3)
    assert infos[0].flops == 2 * 3 * 3 * 2 * 4 * 5 * 5
    assert infos[2].flops == 2 * 100 * 3


def test_absurd_sizes_are_refused_before_allocating():
    with pytest.raises(CnnlabError, match="from 1 to"):
        specs.build([{"type": "conv2d", "filters": 10**9, "kernel": 3}], (1, 8, 8), 10)
    with pytest.raises(CnnlabError, match="over 500,000,000 parameters"):
        specs.build([{"type": "flatten"}, {"type": "dense", "units": 1 << 20}, {"type": "dense", "units": 1 << 20}],
                      (1, 8, 8), 10)


@pytest.mark.parametrize("kernel, stride, size", [(2, 2, 7), (3, 2, 8), (4, 3, 10), (4, 1, 6), (5, 2, 9)])
def test_same_padding_gives_ceil_of_input_over_stride(kernel, stride, size):
    import torch
    layers = [{"type": "conv2d", "filters": 2, "kernel": kernel, "stride": stride, "padding": "same"}]
    model, infos = specs.build(layers + [{"type": "flatten"}, {"type": "dense", "units": "classes"}], (1, size, size), 3)
    expected = -(-size // stride)
    assert infos[0].output_shape == (2, expected, expected)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 3)


def test_evaluation_batches_shrink_with_the_picture_and_score_the_same():
    """1,000 pictures a batch at 32x32 (28x28 too), as many pixels a batch above: 20 at 224x224. The scores are
    those of one pass over every picture."""
    import torch

    from cnnlab.data.datasets import Split
    from cnnlab.models import inference
    sizes = {28: 1000, 32: 1000, 64: 250, 224: 20}
    assert {s: inference.eval_batch(torch.zeros(1, 3, s, s, dtype=torch.uint8)) for s in sizes} == sizes
    torch.manual_seed(0)
    model, _ = specs.build(presets.preset("small-cnn").layers, (3, 96, 96), 3)
    data = Split(torch.randint(0, 256, (300, 3, 96, 96), dtype=torch.uint8), torch.randint(0, 3, (300,)))
    assert inference.eval_batch(data.x) == 111  # 300 pictures in three batches, the last a short one
    scored = inference.evaluate(model, data, 3, keep_probabilities=True)
    with torch.inference_mode():
        whole = inference.logits(model.eval(), data.x)
    assert torch.allclose(scored.probabilities, whole.softmax(1), atol=1e-5)
    assert round(scored.accuracy * 300) == (whole.argmax(1) == data.y).sum().item()
