"""One error type for everything a user can cause: the CLI prints it as one line and exits 2."""


class GhostError(Exception):
    """A problem with user input (a file, a flag, a weight); the message names the file and the problem."""


def file_error(path, problem: str) -> GhostError:
    return GhostError(f"{path}: {problem}")
