"""The peer: the lab's four networks in Keras 3, trained on synthetic in-memory data, on the backend that
KERAS_BACKEND names (tensorflow, Keras' default, or jax).

Run by bench/speed.py in its own process (each framework gets the machine to itself). Prints one JSON line
per (preset, variant): training images per second of the fastest timed epoch (the first epoch, which traces
and compiles, is never timed). Variants:
  fit       the lab's way: model.fit on in-memory NumPy arrays, float32 (on JAX, compiled by XLA as always)
  tf.data   a tf.data pipeline (cached tensors, batched, prefetched) into model.fit
  jit       model.fit with jit_compile=True (XLA; on TensorFlow)
  bf16      the mixed_bfloat16 policy, with tf.data
  bf16+jit  mixed_bfloat16, tf.data and XLA together (on TensorFlow)

    python bench/keras_peer.py mnist-cnn --steps 40 --repeats 2 --variants fit,jit
    KERAS_BACKEND=jax python bench/keras_peer.py mlp --variants fit,bf16
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers as L  # noqa: E402

SHAPES = {"mlp": (32, 32, 3), "mlp-deep": (32, 32, 3), "mnist-cnn": (28, 28, 1), "cifar-cnn": (32, 32, 3)}
BATCH = {"mlp": 128, "mlp-deep": 128, "mnist-cnn": 32, "cifar-cnn": 64}


def build(name: str) -> keras.Model:
    """The same layers, sizes, initialisers and optimizers as cnnlab's presets (cnnlab/presets.py)."""
    he = "he_uniform"
    if name == "mlp":
        body = [L.Flatten(), L.Dense(1024, activation="relu")]
        opt = keras.optimizers.SGD(0.01)  # the lab's SGD(): no momentum
    elif name == "mlp-deep":
        body = [L.Flatten(), L.Dense(1024, activation="relu"), L.Dense(512, activation="relu"),
                L.Dense(256, activation="relu")]
        opt = keras.optimizers.Adam(1e-3)
    elif name == "mnist-cnn":
        body = [L.Conv2D(32, 5, padding="same", activation="relu", kernel_initializer=he), L.MaxPooling2D(),
                L.Conv2D(64, 5, activation="relu", kernel_initializer=he),
                L.Conv2D(128, 5, activation="relu", kernel_initializer=he),
                L.Conv2D(64, 5, activation="relu", kernel_initializer=he), L.MaxPooling2D(), L.Flatten(),
                L.Dense(1024, activation="relu", kernel_initializer=he), L.Dropout(0.1)]
        opt = keras.optimizers.SGD(0.01, momentum=0.7)
    else:
        body = []
        for filters, rate in ((32, 0.3), (64, 0.5), (128, 0.5)):
            for _ in range(2):
                body += [L.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=he),
                         L.BatchNormalization()]
            body += [L.MaxPooling2D(), L.Dropout(rate)]
        body += [L.Flatten(), L.Dense(128, activation="relu", kernel_initializer=he), L.BatchNormalization(),
                 L.Dropout(0.5)]
        opt = keras.optimizers.Adam(1e-3)
    # The logits layer stays float32 under mixed precision, as Keras' guide asks.
    model = keras.Sequential([keras.Input(SHAPES[name]), L.Rescaling(1 / 255), *body, L.Dense(10, dtype="float32")])
    return model, opt


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def measure(name: str, variant: str, steps: int, repeats: int) -> float:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant.startswith("bf16") else "float32")
    keras.utils.set_random_seed(0)
    model, opt = build(name)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile="auto" if keras.backend.backend() == "jax" else "jit" in variant)
    n = BATCH[name] * steps
    x = np.random.default_rng(0).integers(0, 256, (n, *SHAPES[name]), dtype=np.uint8).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, n)
    timer = EpochTimer()
    if variant == "fit" or variant == "jit":
        model.fit(x, y, batch_size=BATCH[name], epochs=1 + repeats, verbose=0, callbacks=[timer])
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(n).batch(BATCH[name])
        model.fit(data.prefetch(tf.data.AUTOTUNE), epochs=1 + repeats, verbose=0, callbacks=[timer])
    return n / min(timer.seconds[1:])  # tracing and XLA compilation happen in the first epoch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=100, help="batches per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs after the first; the fastest counts")
    ap.add_argument("--variants", default="fit,tf.data,jit,bf16,bf16+jit")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    for name in args.presets:
        for variant in args.variants.split(","):
            try:
                ips = measure(name, variant, args.steps, args.repeats)
                print(json.dumps({"preset": name, "variant": variant, "backend": keras.backend.backend(),
                                  "images_per_s": round(ips, 1)}), flush=True)
            except Exception as e:  # a variant XLA cannot compile here is reported, not fatal
                print(json.dumps({"preset": name, "variant": variant, "error": f"{type(e).__name__}: {e}"[:200]}),
                      flush=True)


if __name__ == "__main__":
    main()
