"""The one exception hierarchy shown to users.

    SelfInstructError          anything the CLI prints as one ``Error: …`` line and exits 2 for
    ├── UsageError             a bad option or option value (unknown recipe, --num 0, --out is a file)
    ├── InputError             a bad input file or record; carries ``path`` and ``line`` when known
    └── TeacherError           the teacher refused the work for good (bad key, unknown model, 4xx)

Everything else is a bug and keeps its traceback.
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
