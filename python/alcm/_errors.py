"""Exceptions of the alcm package, one per status code of the C library.

Every exception raised for a library failure is an :class:`Error` with three attributes:
``status`` (the ``enum alcm_status`` value), ``detail`` (the library's detail line, naming
the section or tensor and the byte offset) and ``path`` (the file, or None). The classes
also derive from the built-in exception a Python user would expect (``OSError`` for I/O,
``KeyError`` for a missing tensor, ...), so ``except OSError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "Error", "ArgumentError", "FileError", "FormatError", "DigestError", "LimitError",
    "UnsupportedError", "OutOfMemoryError", "StateError", "ExistsError", "NotFoundError",
    "BoundError", "SignatureError",
]


class Error(Exception):
    """Base class of every error the alcm library reports."""

    #: the library's status code (``enum alcm_status`` in alcm.h)
    status: int = 0
    #: the library's detail line: file, section or tensor, byte offset
    detail: str = ""
    #: the file concerned, or None
    path: str | None = None


class ArgumentError(Error, ValueError):
    """A bad argument or option (status 1)."""
    status = 1


class FileError(Error, OSError):
    """The operating system refused a read, write or rename (status 2)."""
    status = 2


class FormatError(Error):
    """The input breaks a rule of the format: it is malformed (status 3)."""
    status = 3


class DigestError(FormatError):
    """A section's or the table's BLAKE2b digest does not match (status 4)."""
    status = 4


class LimitError(Error):
    """A size or count exceeds a limit of the reader (status 5)."""
    status = 5


class UnsupportedError(Error):
    """Valid input that needs a feature this build or numpy lacks (status 6)."""
    status = 6


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed (status 7)."""
    status = 7


class StateError(Error):
    """The object was poisoned by an earlier error, or misused (status 8)."""
    status = 8


class ExistsError(Error, FileExistsError):
    """The output exists and overwriting was not asked for (status 9)."""
    status = 9


class NotFoundError(Error, KeyError):
    """No tensor, frame or section of that name (status 10)."""
    status = 10

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BoundError(Error, ValueError):
    """A lossy request cannot be honoured, e.g. a size budget too small (status 11)."""
    status = 11


class SignatureError(Error):
    """No signature, a bad one, or one made by another key (status 12)."""
    status = 12


BY_STATUS: dict[int, type[Error]] = {
    cls.status: cls
    for cls in (ArgumentError, FileError, FormatError, DigestError, LimitError,
                UnsupportedError, OutOfMemoryError, StateError, ExistsError, NotFoundError,
                BoundError, SignatureError)
}


def make(cls: type[Error], message: str, *, detail: str = "", path: str | None = None) -> Error:
    """An exception of class ``cls`` with its attributes set (for errors found in Python)."""
    exc = cls(message)
    exc.status = cls.status
    exc.detail = detail or message
    exc.path = path
    return exc
