"""One forward pass for the requests that arrive together.

Each request thread decodes its picture and queues the model's input; one thread runs the model on whatever is
queued (up to `max_batch` inputs) and hands each request its row of probabilities. A lone client waits for no
one; under load a batch of 64 costs far less than 64 batches of one (scripts/bench_serve.py measures both).
The queue is bounded, so a request that finds it full is refused at once (503) instead of waiting forever.
"""

import queue
import threading
from concurrent.futures import Future

import torch

from cnnlab.models import inference


class Busy(Exception):
    """The queue is full: the caller answers 503."""


class Batcher:
    def __init__(self, model: torch.nn.Module, max_batch: int = 64, max_waiting: int = 512):
        self.model, self.max_batch = model, max_batch
        self.queue = queue.Queue(maxsize=max_waiting)
        self.thread = threading.Thread(target=self.run, daemon=True, name="cnnlab-batcher")
        self.thread.start()

    def submit(self, x: torch.Tensor) -> Future:
        """Queue one prepared input (C, H, W); the future's result is its probabilities."""
        done = Future()
        try:
            self.queue.put_nowait((x, done))
        except queue.Full:
            raise Busy(f"{self.queue.maxsize} pictures are waiting for the model") from None
        return done

    def run(self):
        while True:
            items = [self.queue.get()]
            while len(items) < self.max_batch:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items  # close(): answer what came before it, then end
            items = [item for item in items if item is not None]
            try:
                probs = inference.probabilities(self.model, torch.stack([x for x, _ in items]))
                for (_, done), row in zip(items, probs):
                    done.set_result(row)
            except Exception as e:  # e.g. out of memory: every request of the batch hears of it
                for _, done in items:
                    done.set_exception(e)
            if stop:
                return

    def close(self):
        self.queue.put(None, timeout=10)
        self.thread.join(timeout=10)
