"""Crash-safe file writing: everything is written to a temporary name and renamed.

A rename within one folder is atomic on POSIX file systems, so a killed process leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import pandas as pd

__all__ = ["atomic_path", "read_json", "write_csv", "write_json"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success renames it onto ``path``.

    The temporary name keeps the suffix, so writers that pick a format by extension work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: str | Path, value: object) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_csv(path: str | Path, table: pd.DataFrame) -> Path:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)
    return Path(path)


def read_json(path: str | Path) -> object:
    return json.loads(Path(path).read_text())


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
