"""Per-epoch progress: a live bar on a terminal, one plain line per epoch otherwise (CI logs stay readable)."""

import sys
import time


def format_logs(logs: dict) -> str:
    parts = [f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    return " - ".join(parts + [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.1f}s"])


class Progress:
    def __init__(self, title: str, steps: int, stream=None):
        self.title, self.steps, self.stream = title, steps, stream or sys.stderr
        self.live = self.stream.isatty()
        self.start = self.last_draw = time.perf_counter()

    def update(self, step: int, loss: float):
        now = time.perf_counter()
        if not self.live or (now - self.last_draw < 0.1 and step < self.steps):
            return
        self.last_draw = now
        done = step / self.steps
        eta = (now - self.start) * (1 - done) / max(done, 1e-9)
        bar = "=" * int(28 * done) + ">" + "." * (28 - int(28 * done))
        self.stream.write(f"\r{self.title} [{bar[:29]}] {step}/{self.steps} - loss {loss:.4f} - ETA {eta:.0f}s ")
        self.stream.flush()

    def done(self, logs: dict):
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        print(f"{self.title} - {format_logs(logs)}", flush=True)
