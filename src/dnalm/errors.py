"""The one error type users see: bad input, said once, with the fix."""


class InputError(Exception):
    """A problem with the user's input or configuration.

    The message names the file (and line or record) and says how to fix it.
    Workflow scripts print it without a traceback and exit non-zero.
    """

    def __init__(self, message: str, *, path: object = None, fix: str | None = None):
        parts = [f"{path}: {message}" if path is not None else message]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))
