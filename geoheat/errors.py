"""The errors geoheat raises for bad input; each message is one line for the user.

Each also subclasses the builtin that fits (as rasterio's CRSError(ValueError) does), so
code that knows nothing of geoheat can still catch a bad value or an unwritable file.
"""


class GeoheatError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""


class InputError(GeoheatError, ValueError):
    """The inputs give nothing to draw: missing folder, no files, nothing left after filters."""


class ParameterError(GeoheatError, ValueError):
    """An option value that cannot work: zoom, bounds, image size."""


class OutputError(GeoheatError, OSError):
    """An output cannot be written: missing or unwritable folder, wrong file type."""

    def __str__(self) -> str:  # OSError's own would show (errno, text) for two arguments
        return str(self.args[0]) if self.args else ""


class ReadError(GeoheatError, ValueError):
    """One activity file (GPX, FIT, TCX) cannot be read; the build skips it and counts it."""


GPXError = ReadError  # the name from when geoheat read GPX alone
