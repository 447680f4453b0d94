"""One self-contained HTML page: sections with anchors, tables from DataFrames, figures inlined.

The report pages (``osteo report``, ``osteo report --run``) are single files a reviewer can
open offline or attach to a submission: every PNG is embedded as a base64 data URI, the
style sheet is inline, nothing is fetched. Written with the standard library and pandas'
``to_html`` (a templating library would add a dependency for a dozen lines).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.io import atomic_path

__all__ = ["Page"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
.note { font-size: 0.85em; color: #555; } nav a { margin-right: 1em; }
"""


def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


class Page:
    """An HTML page built section by section, then written atomically with :meth:`write`."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[tuple[str, str, list[str]]] = []

    def section(self, anchor: str, title: str) -> "Page":
        """Starts a section ``<h2 id=anchor>``; the following parts go into it."""
        self.sections.append((anchor, title, []))
        return self

    def _add(self, part: str) -> "Page":
        if not self.sections:
            self.section("top", self.title)
        self.sections[-1][2].append(part)
        return self

    def text(self, text: str, *, note: bool = False) -> "Page":
        """A paragraph (escaped)."""
        return self._add(f"<p{' class=note' if note else ''}>{html.escape(text)}</p>")

    def table(self, frame: pd.DataFrame, *, digits: int = 3, caption: str = "") -> "Page":
        """A table of ``frame`` (floats with ``digits`` decimals, NaN/None empty)."""
        shown = frame.map(lambda v: _cell(v, digits)) if len(frame) else frame
        text = shown.to_html(index=False, escape=True, border=0)
        return self._add((f"<p class=note>{html.escape(caption)}</p>" if caption else "") + text)

    def figure(self, path: str | Path, caption: str = "") -> "Page":
        """The PNG at ``path`` inlined (a missing file is stated, not skipped)."""
        path = Path(path)
        if not path.is_file():
            return self.text(f"(figure {path.name} was not written: {caption})", note=True)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        alt = html.escape(caption or path.stem)
        return self._add(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
        )

    def render(self) -> str:
        """The page as one HTML string."""
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in self.sections)
        body = "\n".join(f'<h2 id="{a}">{html.escape(t)}</h2>\n' + "\n".join(parts) for a, t, parts in self.sections)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body><h1>{html.escape(self.title)}</h1>\n<nav>{nav}</nav>\n{body}\n"
            "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Writes the page to ``path`` atomically; returns the path."""
        path = Path(path)
        with atomic_path(path) as temporary:
            temporary.write_text(self.render(), encoding="utf-8")
        return path
