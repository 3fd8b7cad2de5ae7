"""The one exception cnnlab raises for a problem with the user's input or files."""


class CnnlabError(ValueError):
    """A problem with the user's input or files (an unknown preset, a bad value, an unreadable file, a model that
    does not fit the data). The CLI prints it as one line and exits with status 2; nothing saved is touched.
    A ValueError, so code that already catches bad values catches it."""

    def __init__(self, message: str):
        super().__init__(one_line(message))  # whatever a wrapped library said


def one_line(message) -> str:
    """A message, or an exception's, on one line: every run of whitespace (newlines too) becomes one space."""
    return " ".join(str(message).split())
