"""One error type for everything a user can cause: the CLI prints it as one line and exits 2."""


class GhostError(Exception):
    """A problem with user input (a file, a flag, a weight); the message names the file and the problem."""


def file_error(path, problem: str) -> GhostError:
    return GhostError(f"{path}: {problem}")


def at_least_one(flag: str, value) -> None:
    """The one check for count options (--batch, --detect-every, --frames, --threads ...), worded the same
    everywhere they are read."""
    if value is not None and value < 1:
        raise GhostError(f"{flag} {value}: must be at least 1")


class Cancelled(KeyboardInterrupt):
    """A run stopped on the caller's request (Swapper.swap_video's `cancel`). A KeyboardInterrupt, so it takes
    Ctrl-C's path: every stage stops and the partial output is removed; `except Exception` does not swallow it."""
