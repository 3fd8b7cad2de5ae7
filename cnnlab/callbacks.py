"""Keras' callbacks, for `cnnlab.train(callbacks=[...])`; subclass `Callback` for your own (hooks: see
cnnlab.training.callbacks)."""

from cnnlab.training.callbacks import *  # noqa: F403
from cnnlab.training.callbacks import __all__  # noqa: F401
