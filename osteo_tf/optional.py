"""One helper for every optional dependency (pydicom, Ray, PyTorch), after MONAI's ``optional_import``.

Each is imported only where it is needed; when it is missing the user gets an
:class:`~osteo_tf.errors.OsteoInputError` that says what needed it and the ``pip`` line
that installs it (the package's extra), not an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from osteo_tf.errors import OsteoInputError

__all__ = ["EXTRAS", "optional_import"]

#: module → (the package's extra that installs it, the PyPI name).
EXTRAS = {"pydicom": ("dicom", "pydicom"), "ray": ("ray", "ray"), "torch": ("torch", "torch")}


def optional_import(module: str, *, purpose: str, hint: str = "", parameter: str | None = None) -> ModuleType:
    """Imports optional dependency ``module``, or says how to install it.

    Args:
        module: a key of :data:`EXTRAS` (``"pydicom"``, ``"ray"``, ``"torch"``).
        purpose: what needs it, the start of the message (``"reading DICOM files"``).
        hint: appended to the message (another way out, e.g. converting elsewhere).
        parameter: the function parameter that asked for it, recorded on the error.

    Returns:
        The imported module.

    Raises:
        OsteoInputError: ``module`` is not installed (or fails to import).

    Example::

        >>> optional_import("pydicom", purpose="reading DICOM files").__name__
        'pydicom'
    """
    extra, package = EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise OsteoInputError(
            f"{purpose} needs {package}, which is not installed ({error}); install it with: "
            f"pip install 'osteo_tf[{extra}]' (or: pip install {package}){hint}",
            parameter=parameter,
        ) from None
