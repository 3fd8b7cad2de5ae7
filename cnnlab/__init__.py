"""cnnlab: train, evaluate, explain and serve small image classifiers (MLPs and CNNs), in Keras' words, on PyTorch.

    import cnnlab
    run = cnnlab.train("mnist-cnn", epochs=1)
    run.history["val_accuracy"], run.evaluate().accuracy, run.predict(images)

The public API is what `__all__` lists (documented in docs/api.md); `cnnlab.callbacks` holds Keras' callbacks.
"""


def _flush_denormals():
    """Flush denormal floats to zero, as TensorFlow's thread pools do. A momentum buffer whose weight stops
    getting gradient (a dead ReLU's) decays geometrically into the denormal range, where each multiply costs
    about a hundred cycles: after 300 mnist-cnn steps on noise 58% of the buffers were denormal and the
    optimizer step took 2.1x as long. Set at import, before torch starts its worker threads: they inherit it."""
    import torch
    torch.set_flush_denormal(True)


_flush_denormals()

from cnnlab import api, callbacks  # noqa: E402,F401
from cnnlab.api import *  # noqa: E402,F403
from cnnlab.core import __version__  # noqa: E402
from cnnlab.core.errors import CnnlabError  # noqa: E402

__all__ = ["CnnlabError", "__version__", *api.__all__]
