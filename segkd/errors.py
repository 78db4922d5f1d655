"""segkd's own error types.

Every error a user can cause is a `SegkdError` whose message names the culprit (file, key or value).
The CLI prints it as one red line and exits with `exit_code`: 2 for bad usage or input, 1 for a job that failed.
"""


class SegkdError(Exception):
    """Bad usage or input: the message names the file, key or value."""

    exit_code = 2


class ConfigError(SegkdError):
    """A preset, an override or a resolved config is invalid."""


class DataError(SegkdError):
    """A dataset file is missing, unreadable or inconsistent."""


class WeightsError(SegkdError):
    """A weights file does not fit the model it is loaded into."""


class JobFailed(SegkdError):
    """The job ran but failed (an export that does not verify, a NaN loss, ...)."""

    exit_code = 1


class PeerFailed(JobFailed):
    """This rank of a distributed job stopped because another rank failed first and already said why: the
    command boundary exits without a second message."""


class Interrupted(SegkdError):
    """The user pressed Ctrl-C; the message says what was saved and how to resume."""

    exit_code = 130


class NotImplementedYet(SegkdError):
    """A command that a later release fills."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), cut to `limit` characters:
    how a library's multi-line error is quoted inside segkd's one-line messages."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]
