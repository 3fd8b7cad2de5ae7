"""The training loop: Keras' fit() on PyTorch, readable on one screen.

Speed comes from keeping the whole data set in memory as uint8 and making each batch with one gather and
one conversion (no per-sample Python), channels_last for conv nets, bf16 autocast on CPUs with native bf16,
fused optimizer steps, and evaluation at a large batch size.
Reproducibility comes from deriving every epoch's shuffle and dropout randomness from (seed, epoch), so a
resumed run draws exactly the numbers an uninterrupted one would have.
"""

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import CnnlabError, checkpoints, config, distributed, models
from cnnlab.datasets import Split
from cnnlab.progress import Progress

EVAL_BATCH = 1000


def make_optimizer(params, o: config.OptimizerConfig) -> torch.optim.Optimizer:
    # fused=True: one kernel per step instead of a dozen passes over the weights. The same update; for Adam on
    # mlp-deep the step went from 63% of the training time to 23%.
    if o.name == "sgd":
        if o.nesterov and o.momentum == 0:
            raise CnnlabError("optimizer.nesterov needs optimizer.momentum > 0")
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay, fused=True)
    if o.name in ("adam", "adamw"):
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.epsilon, weight_decay=o.weight_decay,
                   fused=True)
    return torch.optim.RMSprop(params, lr=o.lr, alpha=o.rho, eps=o.epsilon, momentum=o.momentum,
                               weight_decay=o.weight_decay)


def native_bf16() -> bool:
    """Does this CPU multiply bf16 in hardware (AVX512-BF16 or AMX)? Elsewhere bf16 is emulated and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def uses_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and native_bf16())


def to_input(x_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = x_uint8.float().mul_(1.0 / 255)  # pixels in [0, 1], as the lab's x / 255
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, flip: bool, translate: int, blur: float = 0.0) -> torch.Tensor:
    """Random left-right flips, shifts and blurs of a uint8 batch, drawn from torch's generator (seeded per epoch,
    saved in resume points). Shifts pad by reflection and crop; images sharing a shift are cropped together, so a
    batch costs at most (2 * translate + 1)^2 slicing ops, not one per image."""
    if flip:
        mirrored = torch.rand(len(x)) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
    if translate:
        t, (h, w) = translate, x.shape[-2:]
        padded = F.pad(x.float(), (t, t, t, t), mode="reflect").to(torch.uint8)
        shifts = torch.randint(0, 2 * t + 1, (2, len(x)))
        out = torch.empty_like(x)
        for code in (shifts[0] * (2 * t + 1) + shifts[1]).unique().tolist():
            dy, dx = divmod(code, 2 * t + 1)
            same = ((shifts[0] == dy) & (shifts[1] == dx)).nonzero().squeeze(1)
            out[same] = padded[same, :, dy:dy + h, dx:dx + w]
        x = out
    if blur:
        x = gaussian_blur(x, torch.rand(len(x)) * blur)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each uint8 image with its own Gaussian (sigma in pixels, 0 = unchanged): a separable 5-tap filter,
    one grouped conv per direction for the whole batch, reflected borders."""
    n, c, h, w = x.shape
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-taps ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # one row per image channel
    y = F.pad(x.float().reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)  # along rows
    y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)  # along columns
    return y.round_().clamp_(0, 255).to(torch.uint8).reshape(n, c, h, w)


def batch_starts(n: int, batch_size: int) -> list:
    """Where each batch begins. A last batch of one sample joins the one before: BatchNorm cannot train on a
    single sample (Keras would crash on it too, with a less helpful message)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


class Trainer:
    def __init__(self, model, cfg: config.Config, train: Split, val: Split | None, callbacks, run_dir: Path,
                 about: dict | None = None):
        self.model, self.cfg, self.train_data, self.val_data = model, cfg, train, val
        self.about = about or {}  # classes, input shape, data set: saved with the weights so a model stands alone
        self.callbacks, self.run_dir = callbacks, Path(run_dir)
        self.channels_last = cfg.channels_last and models.uses_conv(model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.bf16 = uses_bf16(cfg.precision)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        # Several ranks: DDP averages the gradients of the ranks' slices of each global batch.
        self.net = torch.nn.parallel.DistributedDataParallel(model) if self.world > 1 else model
        self.optimizer = make_optimizer(model.parameters(), cfg.optimizer)
        # use_ema: `averaged` follows the weights as their moving average (BatchNorm's statistics too, so they
        # match the averaged weights). It is what validation scores and checkpoints save; fit ends with it.
        self.averaged = copy.deepcopy(model) if cfg.optimizer.use_ema else None
        # (average, weights) tensor pairs, made once: loading a state copies into these same tensors
        self.average_pairs = list(zip(self.averaged.state_dict().values(), model.state_dict().values())) \
            if self.averaged is not None else []
        self.lr = cfg.optimizer.lr  # the base rate; callbacks may change it, Keras' decay scales it per step
        self.step, self.epoch, self.batch, self.saved_epoch, self.history = 0, 0, 0, 0, []
        self.steps_per_epoch = len(batch_starts(len(train), cfg.batch_size))
        self.saved_at = time.monotonic()
        self.stop_training, self.restored_epoch = False, None
        for cb in callbacks:
            cb.set_trainer(self)

    def fit(self):
        cfg, data = self.cfg, self.train_data
        for cb in self.callbacks:
            cb.on_train_begin()
        starts = batch_starts(len(data), cfg.batch_size)
        steps = len(starts)
        while self.epoch < cfg.epochs and not self.stop_training:
            self.model.train()
            start = time.perf_counter()
            progress = Progress(f"Epoch {self.epoch + 1}/{cfg.epochs}", steps) if self.rank == 0 else None
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, self.epoch)))
            if self.batch == 0:  # a new epoch; one resumed mid-way continues its saved RNG stream and sums
                # Dropout's randomness for this epoch (each rank its own stream, rank 0 the single-process one).
                torch.manual_seed(epoch_seed(cfg.seed, self.epoch) + 1 + 7919 * self.rank)
                self.loss_sum, self.correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
            for i in range(self.batch, steps):
                batch = order[starts[i]:starts[i + 1] if i + 1 < steps else len(data)]
                idx = distributed.shard(batch)
                a = cfg.augment  # each off by default: augment then returns the batch untouched
                x = to_input(augment(data.x[idx], a.flip, a.translate, a.blur), self.channels_last)
                y = data.y[idx]
                for group in self.optimizer.param_groups:
                    group["lr"] = self.current_lr()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                    logits = self.net(x).float()  # the loss is always computed in fp32
                smooth = cfg.label_smoothing
                if self.world > 1:  # sum over this slice / global batch, x world (DDP averages): the global mean
                    loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=smooth) * (self.world / len(batch))
                else:
                    loss = F.cross_entropy(logits, y, label_smoothing=smooth)
                if not torch.isfinite(loss):
                    raise CnnlabError(f"loss became {loss.item()} at epoch {self.epoch + 1}, step {i + 1}; "
                                      f"the last good checkpoint is kept (try a lower optimizer.lr)")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.averaged is not None:
                    self.update_average()
                self.step, self.batch = self.step + 1, i + 1
                self.loss_sum += loss.detach() * len(y) if self.world == 1 else F.cross_entropy(
                    logits.detach(), y, reduction="sum")
                self.correct += (logits.argmax(1) == y).sum()
                if progress:
                    progress.update(i + 1, self.loss_sum.item() / (starts[i] + len(batch)) * self.world)
                if self.world == 1 and cfg.autosave_seconds and time.monotonic() - self.saved_at > cfg.autosave_seconds:
                    self.save_state()  # a mid-epoch resume point: a kill loses at most autosave_seconds
            distributed.all_sum(self.loss_sum, self.correct)  # the epoch's metrics over every rank's slices
            logs = {"loss": self.loss_sum.item() / len(data), "accuracy": self.correct.item() / len(data)}
            if self.val_data is not None and len(self.val_data):
                val = self.evaluate(self.val_data, fast=True, model=self.scored_model)
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            logs.update(lr=self.current_lr(), seconds=round(time.perf_counter() - start, 3))
            self.history.append(logs)
            for cb in self.callbacks:
                cb.on_epoch_end(self.epoch, logs)
            self.epoch, self.batch = self.epoch + 1, 0
            self.save_state()
            self.saved_epoch = self.epoch
            if progress:
                progress.done(logs)  # printed once saved: an epoch on screen is an epoch that survives Ctrl-C
        if self.averaged is not None:  # as Keras' fit ends with finalize_variable_values
            self.model.load_state_dict(self.averaged.state_dict())
        for cb in self.callbacks:
            cb.on_train_end()
        return self.history

    @property
    def scored_model(self) -> torch.nn.Module:
        """The model that validation scores and checkpoints save: the weights' moving average with use_ema."""
        return self.model if self.averaged is None else self.averaged

    @torch.no_grad()
    def update_average(self):
        weight = 1 - self.cfg.optimizer.ema_momentum
        for average, live in self.average_pairs:
            if average.is_floating_point():
                average.lerp_(live, weight)
            else:  # BatchNorm's batch counter
                average.copy_(live)

    def save_state(self):
        if self.rank != 0:  # one writer; the other ranks hold the same weights
            return
        checkpoints.save(self.run_dir / "last.pt", self.state_dict(), keep_previous=True)
        self.saved_at = time.monotonic()

    def current_lr(self) -> float:
        lr = self.lr / (1 + self.cfg.optimizer.decay * self.step)
        if self.cfg.lr_schedule == "onecycle":
            total = self.cfg.epochs * self.steps_per_epoch
            warmup = self.cfg.warmup_epochs * self.steps_per_epoch
            lr *= (self.step + 1) / warmup if self.step < warmup else max(total - self.step, 0) / (total - warmup)
        return lr

    @torch.inference_mode()
    def evaluate(self, data: Split, num_classes: int | None = None, fast: bool = False, model=None) -> dict:
        """Loss and accuracy over `data`; with several ranks each scores every world_size-th chunk, then sums.
        fast: in the training precision, as Keras validates under its mixed-precision policy (the epochs'
        validation). Otherwise fp32, the reference that predict, serve and export reproduce (test scores)."""
        model = self.model if model is None else model
        model.eval()
        sums = torch.zeros(2, dtype=torch.float64)  # loss, correct
        per_class_total = torch.zeros(num_classes or 1, dtype=torch.int64)
        per_class_right = torch.zeros(num_classes or 1, dtype=torch.int64)
        for i in range(self.rank * EVAL_BATCH, len(data), self.world * EVAL_BATCH):
            x, y = to_input(data.x[i:i + EVAL_BATCH], self.channels_last), data.y[i:i + EVAL_BATCH]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast and self.bf16):
                logits = model(x).float()
            hit = logits.argmax(1) == y
            sums += torch.tensor([F.cross_entropy(logits, y, reduction="sum").item(), hit.sum().item()],
                                 dtype=torch.float64)
            if num_classes:
                per_class_total += torch.bincount(y, minlength=num_classes)
                per_class_right += torch.bincount(y[hit], minlength=num_classes)
        distributed.all_sum(sums, per_class_total, per_class_right)
        out = {"loss": sums[0].item() / len(data), "accuracy": sums[1].item() / len(data)}
        if num_classes:
            out["per_class_accuracy"] = (per_class_right / per_class_total.clamp(min=1)).tolist()
        return out

    def save_model(self, path: str, epoch: int, logs: dict):
        """What ModelCheckpoint writes: weights plus enough metadata to rebuild and evaluate the model."""
        if self.rank != 0:
            return
        checkpoints.save(self.run_dir / path, {"config": config.to_dict(self.cfg), "about": self.about,
                                               "epoch": epoch + 1, "logs": logs,
                                               "model": self.scored_model.state_dict()})

    def state_dict(self) -> dict:
        """Everything a resume needs, mid-epoch included: the epoch's sums so far and the RNG stream."""
        return {"config": config.to_dict(self.cfg), "about": self.about, "epoch": self.epoch, "batch": self.batch,
                "step": self.step, "lr": self.lr, "history": self.history, "stopped": self.stop_training,
                "threads": torch.get_num_threads(),  # bit-exact resume needs the same count
                "epoch_sums": [self.loss_sum.item(), self.correct.item()] if self.batch else [0.0, 0],
                "rng": torch.get_rng_state(), "model": self.scored_model.state_dict(),
                "live_model": self.model.state_dict() if self.averaged is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks}}

    def load_state_dict(self, state: dict):
        # "model" is the scored model; with use_ema the trained weights are under "live_model"
        self.model.load_state_dict(state.get("live_model") or state["model"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # Checkpoints store tensors contiguous; a fused step walks a momentum buffer in its parameter's memory
        # order, so a channels_last weight needs its buffers back in channels_last (else the resume goes wrong).
        for p, slots in self.optimizer.state.items():
            for key, t in slots.items():
                if torch.is_tensor(t) and t.shape == p.shape:
                    slots[key] = torch.empty_like(p).copy_(t)
        self.epoch, self.batch, self.step, self.lr = state["epoch"], state["batch"], state["step"], state["lr"]
        self.saved_epoch = self.epoch
        self.history, self.stop_training = list(state["history"]), state["stopped"]
        if self.batch:
            self.loss_sum = torch.tensor(state["epoch_sums"][0], dtype=torch.float64)
            self.correct = torch.tensor(state["epoch_sums"][1], dtype=torch.int64)
            torch.set_rng_state(state["rng"])
        for cb in self.callbacks:
            cb.load_state_dict(state["callbacks"].get(type(cb).__name__, cb.state_dict()))
