"""WeightAverage (Keras' use_ema) driven by hand-set weights: the average's arithmetic, BatchNorm's counter, and
a loaded state that the average keeps following."""

import torch
from torch import nn

from cnnlab.training.weight_average import WeightAverage


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_each_update_moves_the_average_by_one_minus_momentum_of_the_gap():
    net = small_net()
    ema = WeightAverage(net, momentum=0.75)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(4.0)
    ema.update()
    assert torch.allclose(ema.model[0].weight, start + 1.0)  # 0.75 * start + 0.25 * (start + 4)
    ema.update()
    assert torch.allclose(ema.model[0].weight, start + 1.75)  # the gap of 3 shrinks by a quarter again
    assert net[0].weight.data_ptr() != ema.model[0].weight.data_ptr()  # a copy, not the live weights


def test_batchnorm_statistics_are_averaged_and_its_batch_counter_is_copied():
    net = small_net()
    ema = WeightAverage(net, momentum=0.5)
    net.train()
    net(torch.randn(8, 3) * 10 + 5)  # moves the running mean and counts one batch
    ema.update()
    assert ema.model[1].num_batches_tracked.item() == 1
    assert torch.allclose(ema.model[1].running_mean, net[1].running_mean / 2)  # from 0, half the way


def test_a_state_loaded_into_the_average_is_followed_from_there():
    net = small_net()
    ema = WeightAverage(net, momentum=0.5)
    saved = {k: v + 2.0 if v.is_floating_point() else v for k, v in ema.model.state_dict().items()}
    ema.model.load_state_dict(saved)  # a resume: copies into the same tensors the pairs hold
    ema.update()
    assert torch.allclose(ema.model[0].bias, net[0].bias + 1.0)
