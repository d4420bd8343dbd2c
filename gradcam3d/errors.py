"""Errors the engine reports to its callers.

`Refusal` is for bad input a user can act on (a model with a Lambda layer, a text file named
.mp4, a class index out of range): its message is shown to the user as it is, and the
command line exits with status 2 and the message on one line. Anything else is an internal
error (status 1).
"""

from __future__ import annotations


class Refusal(Exception):
    """The input is refused; `str(exc)` is a complete, user-facing sentence."""

    def __init__(self, message: str, *, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


class ModelRefused(Refusal):
    pass


class VideoRefused(Refusal):
    pass


EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
EXIT_REFUSED = 2
