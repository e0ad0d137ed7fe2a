"""The errors geoheat raises for bad input; each message is one line for the user."""


class GeoheatError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""


class InputError(GeoheatError):
    """The inputs give nothing to draw: missing folder, no files, nothing left after filters."""


class ParameterError(GeoheatError):
    """An option value that cannot work: zoom, bounds, image size."""


class OutputError(GeoheatError):
    """An output cannot be written: missing or unwritable folder, wrong file type."""


class GPXError(GeoheatError):
    """One GPX file cannot be read; the build skips it and counts it."""
