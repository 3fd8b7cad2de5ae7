"""Seeded, stratified hold-outs: the same share of every class, chosen by a seeded permutation."""

import torch


def stratified_split(y: torch.Tensor, fraction: float, seed: int):
    """Indices (kept, held out): `fraction` of every class held out, chosen by a seeded permutation."""
    if len(y) == 0:
        return y.new_zeros(0), y.new_zeros(0)
    g = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        kept.append(idx[k:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values
