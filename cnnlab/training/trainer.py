"""The training loop: Keras' fit() on PyTorch, readable on one screen.

Speed comes from keeping the whole data set in memory as uint8 (on the GPU, when training on one) and making
each batch with one gather and one conversion (no per-sample Python), channels_last for conv nets, bf16 autocast
where the hardware computes it natively, fused optimizer steps, and evaluation at a large batch size. On a CUDA
GPU the host never waits for the device between steps: the metrics are summed there and read every READ_EVERY
steps, and a step whose loss is not finite is skipped by the optimizer on the device (a gradient scaler).
Reproducibility comes from deriving every epoch's shuffle and dropout randomness from (seed, epoch), so a
resumed run draws exactly the numbers an uninterrupted one would have.
"""

import math
import time
from pathlib import Path

import torch

from cnnlab.core import checkpoints, config, devices
from cnnlab.data.datasets import Split
from cnnlab.data.transforms import augment, to_input
from cnnlab.models import inference
from cnnlab.training import distributed, divergence
from cnnlab.training.callbacks import TerminateOnNaN
from cnnlab.training.class_weight import class_weights
from cnnlab.training.optimizers import make_optimizer
from cnnlab.training.weight_average import WeightAverage

READ_EVERY = 50  # on a CUDA GPU, steps between the host's reads of the loss (each read waits for the device)


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
    """Trains `model` on `train` as the config says, validating on `val` after every epoch. TerminateOnNaN is
    always among the callbacks (as Keras always adds History)."""

    def __init__(self, model, cfg: config.Config, train: Split, val: Split | None, callbacks, run_dir: Path,
                 about: dict | None = None):
        self.model, self.cfg, self.train_data, self.val_data = model, cfg, train, val
        self.about = about or {}  # classes, input shape, data set: saved with the weights so a model stands alone
        self.num_classes = len(self.about.get("classes", [])) or 1 + max(
            int(split.y.max()) for split in (train, val) if split is not None and len(split))
        callbacks = list(callbacks)
        if not any(isinstance(cb, TerminateOnNaN) for cb in callbacks):
            callbacks.insert(0, TerminateOnNaN())
        self.callbacks, self.run_dir = callbacks, Path(run_dir)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        # The device, the precision on it, and the model and uint8 data moved there once.
        self.device = distributed.device(devices.resolve(cfg.device))
        if self.device.type == "cpu":
            devices.keep_freed_memory()
        devices.make_deterministic(self.device, cfg.deterministic)
        self.precision = devices.precision(self.device, cfg.precision)
        self.autocast = devices.AUTOCAST[self.precision]
        model.to(self.device)
        self.train_data, self.val_data = (s if s is None else Split(s.x.to(self.device), s.y.to(self.device))
                                          for s in (train, val))
        self.channels_last = inference.channels_last_layout(model, cfg.channels_last)
        # Several ranks: DDP averages the gradients of the ranks' slices of each global batch.
        self.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None) if self.world > 1 else model
        self.optimizer = make_optimizer(model.parameters(), cfg.optimizer)
        weights = class_weights(cfg.class_weight, train.y, self.about.get("classes"), self.num_classes)
        self.class_weights = None if weights is None else weights.to(self.device)
        scaler = devices.scaler_settings(self.device.type, self.precision)
        self.scaler = None if scaler is None else torch.amp.GradScaler(self.device.type, **scaler)
        self.read_every = READ_EVERY if self.device.type == "cuda" else 1
        self.unread = []  # the losses of the steps since the host last read them
        # use_ema: the average is what validation scores and checkpoints save; fit ends with it
        self.averaged = WeightAverage(model, cfg.optimizer.ema_momentum) if cfg.optimizer.use_ema else None
        self.lr = cfg.optimizer.lr  # the base rate; callbacks may change it, Keras' decay scales it per step
        self.step, self.epoch, self.batch, self.saved_epoch, self.history = 0, 0, 0, 0, []
        self.loss_sum, self.correct = self.zero_sums()
        self.saved_step = None  # the step whose weights last.pt holds
        self.steps_per_epoch = len(batch_starts(len(train), cfg.batch_size))
        self.saved_at = time.monotonic()
        self.stop_training, self.restored_epoch = False, None
        for cb in callbacks:
            cb.set_trainer(self)

    @property
    def stop_training(self) -> bool:  # kept on the model, where Keras' callbacks set it; ours may set either
        return self.model.stop_training

    @stop_training.setter
    def stop_training(self, value: bool):
        self.model.stop_training = value

    def train_step(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple:
        """One optimizer step on a float batch: (loss, logits), both detached. batch_size: the global batch."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr()
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            logits = self.net(x).float()  # the loss is always computed in fp32
        loss = self.loss(logits, y, batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # a non-finite step is skipped on the GPU, with no wait for it here
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.averaged is not None:
                self.averaged.update()
        elif torch.isfinite(loss):  # a diverged step never reaches the weights; TerminateOnNaN then stops the run
            loss.backward()
            self.optimizer.step()
            if self.averaged is not None:
                self.averaged.update()
        return loss.detach(), logits.detach()

    def loss(self, logits: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The batch's mean cross-entropy; with class weights, Keras' rule: each image's loss times its class's
        weight, summed, over the batch size. Several ranks: this slice's sum over the global batch, x world
        (DDP averages the ranks): the global mean."""
        smooth, weights = self.cfg.label_smoothing, self.class_weights
        if weights is None and self.world == 1:
            return inference.cross_entropy(logits, y, label_smoothing=smooth)
        per_image = inference.cross_entropy(logits, y, "none", smooth)
        if weights is not None:
            per_image = per_image * weights[y]
        return per_image.sum() * (self.world / batch_size if self.world > 1 else 1 / len(y))

    def fit(self):
        cfg, data = self.cfg, self.train_data
        for cb in self.callbacks:
            cb.on_train_begin({})
        starts = batch_starts(len(data), cfg.batch_size)
        steps = len(starts)
        while self.epoch < cfg.epochs and not self.stop_training:
            # The epoch's order and, for a new epoch, dropout's randomness come from (seed, epoch); an epoch
            # resumed mid-way continues its saved RNG stream and sums.
            self.model.train()
            start = time.perf_counter()
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, self.epoch)))
            if self.batch == 0:  # each rank its own dropout stream, rank 0 the single-process one
                torch.manual_seed(epoch_seed(cfg.seed, self.epoch) + 1 + 7919 * self.rank)
                self.loss_sum, self.correct = self.zero_sums()
            for cb in self.callbacks:
                cb.on_epoch_begin(self.epoch, {})
            for i in range(self.batch, steps):
                # The batch: this rank's slice of the global batch, augmented, as float pixels.
                batch = order[starts[i]:starts[i + 1] if i + 1 < steps else len(data)]
                idx = distributed.shard(batch).to(self.device, non_blocking=True)
                a = cfg.augment  # each off by default: augment then returns the batch untouched
                x = to_input(augment(data.x[idx], a.flip, a.translate, a.blur), self.channels_last)
                y = data.y[idx]
                # The step, then the epoch's running sums.
                loss, logits = self.train_step(x, y, len(batch))
                self.step, self.batch = self.step + 1, i + 1
                self.loss_sum += loss * len(y) if self.world == 1 else inference.cross_entropy(logits, y, "sum")
                self.correct += (logits.argmax(1) == y).sum()
                self.unread.append(loss)
                if len(self.unread) == self.read_every or i + 1 == steps:
                    self.after_steps(i, starts[i] + len(batch))
            # The epoch's metrics over every rank's slices, validation, callbacks, then the resume point.
            distributed.all_sum(self.loss_sum, self.correct)
            logs = {"loss": self.loss_sum.item() / len(data), "accuracy": self.correct.item() / len(data)}
            if self.val_data is not None and len(self.val_data):
                val = self.evaluate(self.val_data, fast=True, model=self.scored_model)
                logs.update(val_loss=val.loss, val_accuracy=val.accuracy)
            logs.update(lr=self.current_lr(), seconds=round(time.perf_counter() - start, 3))
            self.history.append(logs)
            for cb in self.callbacks:
                cb.on_epoch_end(self.epoch, logs)
            self.epoch, self.batch = self.epoch + 1, 0
            self.save_state()
            self.saved_epoch = self.epoch
            for cb in self.callbacks:  # an epoch on screen is an epoch that survives Ctrl-C
                cb.on_epoch_saved(self.epoch - 1, logs)
        if self.averaged is not None:  # as Keras' fit ends with finalize_variable_values
            self.model.load_state_dict(self.averaged.model.state_dict())
        for cb in self.callbacks:  # as Keras, the last epoch's logs
            cb.on_train_end(dict(self.history[-1]) if self.history else {})
        return self.history

    def after_steps(self, i: int, seen: int):
        """The callbacks' view of the steps since the last one (every step on a CPU): the epoch's running loss, and
        the newest step's loss or, if one was not finite, that one's, with its step number."""
        losses, self.unread = torch.stack(self.unread).tolist(), []
        bad = next((j for j, v in enumerate(losses) if not math.isfinite(v)), len(losses) - 1)
        logs = {"loss": self.loss_sum.item() / seen * self.world, "batch_loss": losses[bad],
                "loss_step": self.step - len(losses) + 1 + bad}
        for cb in self.callbacks:
            cb.on_train_batch_end(i, logs)
        if self.world == 1 and self.cfg.autosave_seconds and time.monotonic() - self.saved_at > self.cfg.autosave_seconds:
            self.save_state()  # a mid-epoch resume point: a kill loses at most autosave_seconds

    def zero_sums(self) -> tuple:
        """The epoch's loss and correct-answer sums, kept on the device (MPS has no float64)."""
        return (torch.zeros((), dtype=devices.sum_dtype(self.device), device=self.device),
                torch.zeros((), dtype=torch.int64, device=self.device))

    @property
    def scored_model(self) -> torch.nn.Module:
        """The model that validation scores and checkpoints save: the weights' moving average with use_ema."""
        return self.model if self.averaged is None else self.averaged.model

    def save_state(self):
        if self.rank != 0:  # one writer; the other ranks hold the same weights
            return
        if not all(t.isfinite().all() for m in {self.model, self.scored_model} for t in m.state_dict().values()
                   if t.is_floating_point()):  # a finite loss from weights that overflowed: never a resume point
            divergence.stop(self, "the weights became inf or nan", self.step, self.step)
        checkpoints.save(self.run_dir / "last.pt", self.state_dict(), keep_previous=True)
        self.saved_at, self.saved_step = time.monotonic(), self.step

    def current_lr(self) -> float:
        lr = self.lr / (1 + self.cfg.optimizer.decay * self.step)
        if self.cfg.lr_schedule == "onecycle":
            total = self.cfg.epochs * self.steps_per_epoch
            warmup = self.cfg.warmup_epochs * self.steps_per_epoch
            lr *= (self.step + 1) / warmup if self.step < warmup else max(total - self.step, 0) / (total - warmup)
        return lr

    def evaluate(self, data: Split, fast: bool = False, model=None) -> inference.Evaluation:
        """inference.evaluate over this trainer's ranks. fast: in the training precision (the epochs' validation);
        otherwise fp32 (test scores). The data is moved to the trainer's device (the test set, in finish)."""
        data = Split(data.x.to(self.device), data.y.to(self.device))
        return inference.evaluate(self.model if model is None else model, data, self.num_classes,
                                  self.about.get("classes"), autocast=self.autocast if fast else None, rank=self.rank,
                                  world=self.world, all_sum=distributed.all_sum, channels_last=self.channels_last)

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
                "device_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "live_model": self.model.state_dict() if self.averaged is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "callbacks": {key: cb.state_dict() for key, cb in self.keyed_callbacks()}}

    def load_state_dict(self, state: dict):
        # "model" is the scored model; with use_ema the trained weights are under "live_model"
        self.model.load_state_dict(state.get("live_model") or state["model"])
        if self.averaged is not None:
            self.averaged.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # Checkpoints store tensors contiguous; a fused step walks a momentum buffer in its parameter's memory
        # order, so a channels_last weight needs its buffers back in channels_last (else the resume goes wrong).
        for p, slots in self.optimizer.state.items():
            for key, t in slots.items():
                if torch.is_tensor(t) and t.shape == p.shape:
                    slots[key] = torch.empty_like(p).copy_(t)
        self.epoch, self.batch, self.step, self.lr = state["epoch"], state["batch"], state["step"], state["lr"]
        self.saved_epoch, self.saved_step = self.epoch, self.step
        self.history, self.stop_training = list(state["history"]), state["stopped"]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.batch:
            self.loss_sum, self.correct = self.zero_sums()
            self.loss_sum += state["epoch_sums"][0]
            self.correct += state["epoch_sums"][1]
            torch.set_rng_state(state["rng"])
            if self.device.type == "cuda" and state.get("device_rng") is not None:  # dropout's stream on the GPU
                torch.cuda.set_rng_state(state["device_rng"], self.device)
        for key, cb in self.keyed_callbacks():
            cb.load_state_dict(state["callbacks"].get(key, cb.state_dict()))

    def keyed_callbacks(self):
        """(key, callback) for the resume state: the class name, and Name#2, #3 for a user's second of a kind (an
        EarlyStopping of their own beside the config's), so each resumes its own state."""
        seen = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), cb
