"""The one exception hierarchy shown to users.

    SelfInstructError          anything the CLI prints as one ``Error: …`` line and exits 2 for
    ├── UsageError             a bad option or option value (unknown recipe, --num 0, --out is a file)
    ├── InputError             a bad input file or record; carries ``path`` and ``line`` when known
    └── TeacherError           the teacher refused the work for good (bad key, unknown model, 4xx)

Everything else is a bug and keeps its traceback. ``user_errors`` is that mapping, shared by every entry
point (the CLI's commands and train_sft's ``main``).
"""
from __future__ import annotations


class SelfInstructError(Exception):
    """Base of every error a user should see as one line, without a traceback."""


class UsageError(SelfInstructError):
    """An option or its value is wrong."""


class InputError(SelfInstructError):
    """An input file or one of its records is wrong.

    The message reads ``path:line: what is wrong`` (``path:line:column`` when the column is known)
    so that editors can jump to it.
    """

    def __init__(self, what: str, path: str | None = None, line: int | None = None,
                 column: int | None = None):
        self.what, self.path, self.line, self.column = what, path, line, column
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + what)


class TeacherError(SelfInstructError):
    """The teacher cannot do the work and retrying will not help."""


INTERRUPTED = "Interrupted: rerun the same command to resume."


class _UserErrors:
    """See ``user_errors``: a context manager that also decorates (the wrapper keeps the signature, so
    Typer still reads the options from it)."""

    def __init__(self, show: bool, interrupted: str):
        self.show, self.interrupted = show, interrupted

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, SelfInstructError):
            code, message = 2, f"Error: {error}"
        elif isinstance(error, KeyboardInterrupt):
            code, message = 130, self.interrupted
        else:
            return False                      # success, or a bug: its traceback is shown as usual
        if self.show:
            import sys

            print(message, file=sys.stderr, flush=True)
        raise SystemExit(code) from None

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper


def user_errors(fn=None, *, show: bool = True, interrupted: str = INTERRUPTED):
    """The one mapping from errors to what a user sees, for every entry point (the CLI's commands,
    ``python -m selfinstruct.train_sft.train``):

        SelfInstructError  →  one ``Error: …`` line on stderr, exit status 2, no traceback
        KeyboardInterrupt  →  the ``interrupted`` line on stderr, exit status 130
        anything else      →  unchanged (a bug keeps its traceback)

    The exit is ``SystemExit``, which Typer/Click and ``python -m`` both turn into the status.
    ``show=False`` exits the same way without printing (a torchrun rank other than 0).
    Use as ``@user_errors``, ``@user_errors(show=...)``, ``user_errors(fn)`` or ``with user_errors():``.
    Imports nothing at module import time: this module is imported everywhere.
    """
    handler = _UserErrors(show, interrupted)
    return handler(fn) if fn is not None else handler
