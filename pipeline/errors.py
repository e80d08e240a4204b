"""Errors a user can act on, each mapped to an exit code by the CLI."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


class ConfigError(Exception):
    """A configuration file is missing, unreadable or holds a value that is not allowed."""


class DataError(Exception):
    """The data or a check failed; the message says which file, column and what was expected."""


class UsageError(Exception):
    """The command was called in a way that cannot work (a missing option, a refused overwrite)."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM). A BaseException, like KeyboardInterrupt, so that
    no ``except Exception`` swallows it, while every ``finally`` and atomic-write clean-up runs."""


__all__ = [
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "ConfigError",
    "DataError",
    "Terminated",
    "UsageError",
]
