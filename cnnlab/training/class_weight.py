"""Keras' class_weight: how much each class's images count in the training loss."""

import torch

from cnnlab.core.errors import CnnlabError


def class_weights(spec, y: torch.Tensor, classes: list | None, num_classes: int) -> torch.Tensor | None:
    """A weight per class from the config's class_weight: None for "" (all equal); "auto" for inverse frequency
    scaled to average 1 over the training images (a class with a tenth of the images counts ten times as much
    per image, the same in total); or a {class name or index: weight} mapping, unnamed classes weighing 1."""
    if not spec:
        return None
    counts = torch.bincount(y.cpu(), minlength=num_classes).double()
    if spec == "auto":
        present = counts > 0
        weights = torch.zeros(num_classes, dtype=torch.float64)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights.float()
    names = [str(c) for c in classes] if classes else [str(i) for i in range(num_classes)]
    weights = torch.ones(num_classes)
    for key, w in spec.items():
        if key in names:
            weights[names.index(key)] = w
        elif key.isdigit() and int(key) < num_classes:
            weights[int(key)] = w
        else:
            raise CnnlabError(f"class_weight names {key!r}, which is not a class; the classes are {', '.join(names)}")
    if not (weights * counts.float()).sum() > 0:
        raise CnnlabError("class_weight gives every training image weight 0: nothing would be learned")
    return weights
