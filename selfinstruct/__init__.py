"""selfinstruct: Self-Instruct / Alpaca instruction data — generate, curate, fine-tune."""
from __future__ import annotations

import os as _os
import time as _time

__version__ = "0.1.0"

# When the process started using the package: a command's elapsed_seconds counts from here, so that
# loading (imports, models, seeds) is part of what the user waited for.
STARTED = _time.monotonic()

# The repository keeps filters/, seeds/ and train_sft/ at its root; installed, they are the subpackages
# selfinstruct.filters, selfinstruct.seeds and selfinstruct.train_sft (setuptools package-dir). When this
# package is imported straight from a checkout (``python cli.py`` or pytest from the repository root, where
# the working directory shadows the installed package), let the same names resolve to those folders.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isfile(
        _os.path.join(_root, "filters", "base.py")):
    __path__.append(_root)  # type: ignore[name-defined]  # noqa: F821
