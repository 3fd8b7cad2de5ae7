"""The plain PyTorch peer: the lab's four networks trained the way PyTorch's own MNIST example trains
(pytorch/examples, mnist/main.py): a DataLoader over a TensorDataset of float images, model(data), the loss,
backward, optimizer.step(), in float32 and torch's default memory layout, with torch's default optimizers.
Nothing is tuned: it is the loop a PyTorch user writes first, on the same synthetic data as the other sides.

Run by bench/speed.py in its own process. Prints one JSON line per preset: training images per second of the
fastest of --repeats timed epochs after an untimed first one, the rule every side of the bench follows.

    python bench/torch_peer.py mnist-cnn --steps 40 --repeats 2
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SHAPES = {"mlp": (3, 32, 32), "mlp-deep": (3, 32, 32), "mnist-cnn": (1, 28, 28), "cifar-cnn": (3, 32, 32)}
BATCH = {"mlp": 128, "mlp-deep": 128, "mnist-cnn": 32, "cifar-cnn": 64}


def build(name: str) -> tuple:
    """(model, optimizer): the same layers, sizes and optimizers as cnnlab's presets, in plain torch.nn."""
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 1024), nn.ReLU(), nn.Linear(1024, 10))
        return model, torch.optim.SGD(model.parameters(), lr=0.01)
    if name == "mlp-deep":
        model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                              nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)
    if name == "mnist-cnn":
        model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 5), nn.ReLU(), nn.Conv2d(64, 128, 5), nn.ReLU(),
                              nn.Conv2d(128, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(64, 1024), nn.ReLU(), nn.Dropout(0.1), nn.Linear(1024, 10))
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.7)
    layers, channels = [], 3
    for filters, rate in ((32, 0.3), (64, 0.5), (128, 0.5)):
        for _ in range(2):
            layers += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(filters)]
            channels = filters
        layers += [nn.MaxPool2d(2), nn.Dropout(rate)]
    layers += [nn.Flatten(), nn.Linear(128 * 4 * 4, 128), nn.ReLU(), nn.BatchNorm1d(128), nn.Dropout(0.5),
               nn.Linear(128, 10)]
    model = nn.Sequential(*layers)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def measure(name: str, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    model, optimizer = build(name)
    n = BATCH[name] * steps
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *SHAPES[name]), generator=g).float() / 255
    y = torch.randint(0, 10, (n,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH[name], shuffle=True)
    seconds = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return n / min(seconds[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=100, help="batches per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs after the first; the fastest counts")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    for name in args.presets:
        print(json.dumps({"preset": name, "variant": "plain loop", "images_per_s": round(measure(name, args.steps,
                                                                                                  args.repeats), 1)}),
              flush=True)


if __name__ == "__main__":
    main()
