"""cnnlab: train, checkpoint, stop early, resume and evaluate small image classifiers on a CPU."""

__version__ = "0.1.0"


class CnnlabError(Exception):
    """A problem with the user's input or files: the CLI prints it as one line and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # one line, whatever a wrapped library said


def _flush_denormals():
    """Flush denormal floats to zero, as TensorFlow's thread pools do. A momentum buffer whose weight stops
    getting gradient (a dead ReLU's) decays geometrically into the denormal range, where each multiply costs
    about a hundred cycles: after 300 mnist-cnn steps on noise 58% of the buffers were denormal and the
    optimizer step took 2.1x as long. Set at import, before torch starts its worker threads: they inherit it."""
    import torch
    torch.set_flush_denormal(True)


_flush_denormals()
