"""Keras' `use_ema`: a copy of the model whose weights follow the trained ones as their moving average.

BatchNorm's running statistics are averaged too, so they match the averaged weights. The copy is what
validation scores and checkpoints save, and fit ends by loading it into the model (as Keras' fit ends with
finalize_variable_values).
"""

import copy

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, momentum: float):
        self.model = copy.deepcopy(model)
        self.weight = 1 - momentum  # each update: average += weight * (live - average)
        # (average, live) tensor pairs, made once: loading a state copies into these same tensors
        self.pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self):
        for average, live in self.pairs:
            if average.is_floating_point():
                average.lerp_(live, self.weight)
            else:  # BatchNorm's batch counter
                average.copy_(live)
