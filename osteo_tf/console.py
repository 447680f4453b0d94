"""What the ``osteo`` commands print: the project's messages and Keras' progress bars, not the
libraries' start-up chatter (keras-free; the CLI calls :func:`quiet_libraries` before it
imports TensorFlow).

TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA stubs, "All log messages before
absl::InitializeLog()") from C++ straight to file descriptor 2 *while it is imported*, before
``TF_CPP_MIN_LOG_LEVEL`` is honoured, so no environment variable or logger setting removes
them; they are filtered here by capturing descriptor 2 during the import and writing back
every line that is not one of them. After the import, ``TF_CPP_MIN_LOG_LEVEL=3`` hides the
C++ log (e.g. ``failed call to cuInit`` on a machine without a GPU), the ``tensorflow``
Python logger is set to errors, and Python warnings raised inside Keras and TensorFlow are
not shown. A user who sets ``TF_CPP_MIN_LOG_LEVEL`` gets TensorFlow's own logging untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

__all__ = ["IMPORT_NOISE", "filtered_stderr", "log", "quiet_libraries"]

#: The lines TensorFlow prints while it loads: absl's pre-init notice, info/warning lines
#: (``I0000 …``, ``W0000 …``) and the CUDA probing errors of a machine without a GPU.
IMPORT_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} |E\d{4} .*(cuInit|cuda|CUDA)"
)


def quiet_libraries(show: bool = False) -> None:
    """Imports TensorFlow with its start-up lines filtered out and silences its later logging.

    Args:
        show: keep TensorFlow's and Keras' own logging (``--verbose 2``); also kept when the
            user has set ``TF_CPP_MIN_LOG_LEVEL``.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if show or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with filtered_stderr(IMPORT_NOISE):
        import tensorflow  # noqa: F401  (its C++ start-up lines are written now)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow)(\.|$)")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Captures file descriptor 2 (C/C++ writes included) and, at the end, writes back every
    line that ``noise`` does not match, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not noise.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def log(message: str) -> None:
    """Prints one progress line of the project's own, ``[osteo] message``, at once."""
    print(f"[osteo] {message}", flush=True)
