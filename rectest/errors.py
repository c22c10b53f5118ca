"""User-facing errors.

Anything a user can cause (a bad file, a bad value, a missing archive) raises a subclass of
:class:`RectestError`. Entry points catch it and print its message on one line, exiting non-zero
with no traceback. Programming errors stay ordinary exceptions and keep their traceback.
"""


class RectestError(Exception):
    """An error caused by the user's input; its message names the file or value and what was expected."""

    exit_code: int = 2


class DataError(RectestError):
    """A data file, archive or folder is missing, malformed or fails its checksum."""


class ConfigError(RectestError):
    """A configuration value is out of range or inconsistent."""


class Interrupted(RectestError):
    """The user stopped a run (Ctrl-C); the message says where and how to resume."""

    exit_code: int = 130
