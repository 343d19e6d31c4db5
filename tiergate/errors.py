"""Errors a user can cause and fix; the CLI prints them as one line, no traceback."""


class TiergateError(Exception):
    """Base class for user-facing errors (bad config, bad input, refused artifact)."""


class ConfigError(TiergateError):
    """A config or taxonomy file is invalid; the message names the offending key."""


class LabelMismatchError(TiergateError):
    """An artifact was built for a different ordered label list than the taxonomy."""


class InputDataError(TiergateError):
    """User-supplied data (imports, records) does not fit the taxonomy or schema."""


class GenerationError(TiergateError):
    """A generator could not produce data (missing key, unreachable server, ...)."""
