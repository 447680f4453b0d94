"""The one exception type for problems in what a user brought (files, manifests, options).

The CLI catches :class:`OsteoInputError`, prints its message (which names the file, row,
column or parameter at fault and says how to fix it) and exits with status 2 — no traceback.
Anything else that escapes is a bug in osteo_tf and keeps its traceback.

A message about a function's parameter names the parameter as the Python API spells it
(``cpus_per_fit must be a number > 0``) and records it in the error's ``parameter`` attribute;
the CLI writes its own flag there instead (``--cpus-per-fit must be …``).
"""

from __future__ import annotations

__all__ = ["OsteoInputError"]


class OsteoInputError(ValueError):
    """A user mistake: bad manifest, missing file, unknown option value, incomplete run.

    Args:
        message: what is wrong, where, and how to fix it.
        parameter: the function parameter the message is about (its name appears in the
            message), or None.
    """

    def __init__(self, message: str = "", *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
