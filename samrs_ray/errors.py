"""Every error samrs-ray reports to its user, and the exit code each one ends a command with.

Each error subclasses the builtin a caller would catch (a wrong setting is a ValueError, a store
that does not answer an OSError), so code that knows nothing of samrs-ray still handles it;
`samrs-ray` prints the message and exits with `exit_code`:

    0  the run completed (quarantined inputs are listed in manifest/errors)
    1  no scene could be used (NO_USABLE_SCENE), or what a command was to read is not there
    2  ConfigError, CheckpointError: the configuration is wrong; the message says what to change
    3  ConcurrentRunError: another run on the same --out committed first; nothing of this run was
       committed: rerun
    4  RunFailed, StoreError: an outage; the run stopped before its commit (storage full, a store
       or a Ray address that does not answer, a cluster lost); the committed version is untouched:
       rerun once it is back
    5  the run committed, but partially (PARTIAL): the store did not give some scenes' files
       (after retries), so their committed tiles were kept as they were; the summary and
       _run.json's 'partial' name them, and the next run reads them again

InputError is not a command's error: an unusable input file is quarantined in manifest/errors
and the run goes on.
"""

from __future__ import annotations

from typing import Optional

NO_USABLE_SCENE = 1
PARTIAL = 5


class SamrsRayError(Exception):
    """An error that ends a samrs-ray command with `exit_code`."""

    exit_code = 1


class ConfigError(SamrsRayError, ValueError):
    """The run cannot start as configured (the message says what to change)."""

    exit_code = 2


class CheckpointError(ConfigError):
    """A checkpoint that cannot be fetched or used; the message names the URI and the problem."""


class ConcurrentRunError(SamrsRayError, RuntimeError):
    """Another run committed first; this run committed nothing."""

    exit_code = 3


class RunFailed(SamrsRayError, RuntimeError):
    """A run that stopped before committing; the committed version is as it was."""

    exit_code = 4


class StoreError(SamrsRayError, OSError):
    """The store did not give a file's bytes, after retries: unreachable, timed out, 5xx,
    throttled, access refused. It says nothing about the file itself, so no output is dropped
    for it: the file is read again on the next run."""

    exit_code = 4

    def __init__(self, uri: str, cause: str, attempts: int) -> None:
        self.uri, self.cause, self.attempts = uri, cause, attempts
        super().__init__(f"{uri}: the store did not answer after {attempts} tries: {cause}")

    def __reduce__(self):  # OSError's own pickling would call __init__ with the message alone
        return type(self), (self.uri, self.cause, self.attempts)


class InputError(SamrsRayError, ValueError):
    """An input that cannot be used: names the file (and line) and the problem. The run
    quarantines it (manifest/errors) and goes on."""

    def __init__(self, source: str, reason: str, line: Optional[int] = None):
        self.source = source
        self.reason = reason
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
