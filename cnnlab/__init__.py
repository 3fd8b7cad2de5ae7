"""cnnlab: train, checkpoint, stop early, resume and evaluate small image classifiers on a CPU."""

__version__ = "0.1.0"


class CnnlabError(Exception):
    """A problem with the user's input or files: the CLI prints it as one line and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # one line, whatever a wrapped library said
