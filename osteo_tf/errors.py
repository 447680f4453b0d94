"""The one exception type for problems in what a user brought (files, manifests, options).

The CLI catches :class:`OsteoInputError`, prints its message (which names the file, row,
column or option at fault and says how to fix it) and exits with status 2 — no traceback.
Anything else that escapes is a bug in osteo_tf and keeps its traceback.
"""


class OsteoInputError(ValueError):
    """A user mistake: bad manifest, missing file, unknown option value, incomplete run."""
