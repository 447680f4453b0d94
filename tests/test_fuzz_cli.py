"""Fuzzing the CLI with malformed manifests and corrupt images: every one gets a clear error
and exit status 2 — never a Python traceback, never a hang."""

from __future__ import annotations

import contextlib
import csv
import io
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from osteo_tf.cli import main

HEADER = ["image", "patient_id", "age", "sex", "bmi", "t_score"]
ROWS = [
    ["a.png", "P1", "70", "F", "22.5", "-3.0"],
    ["b.png", "P2", "55", "M", "27", "-1.0"],
    ["c.png", "P3", "63", "F", "24", "-2.7"],
    ["d.png", "P4", "58", "M", "31", "0.5"],
]
NUMERIC = {"age": (0, 120), "bmi": (10, 70), "t_score": (-10, 10)}
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def _not_a_number(column):
    lo, hi = NUMERIC[column]

    def bad(text: str) -> bool:
        try:
            return not lo <= float(text.strip()) <= hi
        except ValueError:
            return text.strip() != ""

    return bad


@st.composite
def broken_manifests(draw):
    """(header, rows, image edits, raw bytes or None): always invalid."""
    header, rows = list(HEADER), [list(r) for r in ROWS]
    images: dict[str, bytes] = {}
    kind = draw(
        st.sampled_from(
            [
                "wrong_type",
                "unicode",
                "missing_column",
                "extra_cells",
                "empty_cell",
                "huge",
                "duplicate",
                "dotdot",
                "corrupt_image",
                "truncated_image",
                "binary_manifest",
                "bad_code",
                "label_conflict",
            ]
        )
    )
    row = draw(st.integers(0, len(rows) - 1))
    column = draw(st.sampled_from(sorted(NUMERIC)))
    j = header.index(column)
    if kind == "wrong_type":
        rows[row][j] = draw(st.text(max_size=12).filter(_not_a_number(column)))
    elif kind == "unicode":
        rows[row][j] = draw(st.sampled_from(["６０", "٦٠", "sixty", "60\u00a0y", "—", "½", "∞", "60 ☃"]))
    elif kind == "missing_column":
        k = header.index(draw(st.sampled_from(["image", "patient_id", "age", "sex", "bmi", "t_score"])))
        header.pop(k)
        for r in rows:
            r.pop(k)
        if draw(st.booleans()):  # … and perhaps an unknown one in its place
            header.append(draw(st.sampled_from(["Age", "weight", "é", "notes"])))
            for r in rows:
                r.append(draw(TEXT))
    elif kind == "extra_cells":
        rows[row] += draw(st.lists(TEXT, min_size=1, max_size=3))
    elif kind == "empty_cell":
        rows[row][draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(["", " ", "\t"]))
    elif kind == "huge":
        rows[row][j] = draw(st.sampled_from(["1e308", "9" * 400, "inf", "-inf", "nan", "1e400", "1" + "0" * 30]))
    elif kind == "duplicate":
        rows.append(list(rows[row]))
    elif kind == "dotdot":
        rows[row][0] = draw(
            st.sampled_from(
                [
                    "../a.png",
                    "../../x/../a.png",
                    "..",
                    "../",
                    "./..//missing.png",
                    "a.png/..",
                    "\\..\\a.png",
                    "..\x00.png",
                ]
            )
        )
    elif kind == "corrupt_image":
        images[rows[row][0]] = draw(st.binary(max_size=200))
    elif kind == "truncated_image":
        images[rows[row][0]] = b"TRUNCATE"  # replaced by a prefix of the real PNG below
    elif kind == "bad_code":
        rows[row][header.index("sex")] = draw(
            st.text(min_size=1, max_size=8).filter(lambda s: s.strip().lower() not in ("f", "m", "female", "male", ""))
        )
    elif kind == "label_conflict":
        header.append("label")
        for r in rows:
            r.append("0" if float(r[header.index("t_score")]) <= -2.5 else "1")
    raw = draw(st.binary(min_size=1, max_size=300)) if kind == "binary_manifest" else None
    cut = draw(st.integers(0, 60))
    return kind, header, rows, images, raw, cut


def _write(folder: Path, header, rows, images, raw, cut) -> Path:
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.fromarray(np.full((40, 50), 90, np.uint8)).save(folder / name)  # above min_image_size (32 px)
    for name, data in images.items():
        if data == b"TRUNCATE":
            data = (folder / name).read_bytes()[:cut]
        (folder / name).write_bytes(data)
    path = folder / "m.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


class _Hang(Exception):
    pass


def _run_cli(args: list[str], seconds: int = 60) -> tuple[int, str, str]:
    """main(args) in-process with captured output and an alarm against hangs."""

    def alarm(signum, frame):
        raise _Hang(f"osteo {' '.join(args)} did not answer within {seconds} s")

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_manifests())
def test_malformed_manifests_get_a_clear_error(case):
    kind, header, rows, images, raw, cut = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), header, rows, images, raw, cut)
        code, out, err = _run_cli(["data", "check", str(path), "--exclusions", str(Path(folder) / "e.csv")])
    assert code == 2, (kind, out, err)
    assert err.startswith("osteo: error:") and "Traceback" not in err, (kind, err)
    assert len(err.strip()) > 30, (kind, err)  # says what is wrong


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.lists(
        st.tuples(
            TEXT.filter(
                lambda s: (
                    s.strip()
                    and s.strip() not in HEADER
                    and "\n" not in s
                    and s.strip() not in ("line", "label", "mask")
                )
            ),
            TEXT,
        ),
        max_size=3,
        unique_by=lambda t: t[0].strip(),
    ),
    patient=TEXT.filter(lambda s: s.strip() != ""),
)
def test_extra_columns_and_unicode_ids_are_fine(extra, patient):
    header = HEADER + [name for name, _ in extra]
    rows = [r + [value.replace("\r", "") for _, value in extra] for r in ROWS]
    rows[0][1] = patient
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), header, rows, {}, None, 0)
        code, out, err = _run_cli(["data", "check", str(path), "--exclusions", str(Path(folder) / "e.csv")])
    if code != 0:  # only a reserved/canonical name or a clash may be refused, and clearly
        assert code == 2 and err.startswith("osteo: error:") and "Traceback" not in err, err
    else:
        assert "4 valid rows" in out


@pytest.mark.parametrize("kind", ["wrong_type", "missing_column", "corrupt_image", "dotdot", "binary_manifest"])
def test_train_and_evaluate_answer_malformed_input_too(kind, tmp_path):
    header, rows, images, raw = list(HEADER), [list(r) for r in ROWS], {}, None
    if kind == "wrong_type":
        rows[1][2] = "seventy"
    elif kind == "missing_column":
        header, rows = header[1:], [r[1:] for r in rows]
    elif kind == "corrupt_image":
        images["c.png"] = b"\x89PNG\r\n\x1a\n\x00\x00"
    elif kind == "dotdot":
        rows[0][0] = "../../a.png"
    else:
        raw = bytes(range(256))
    path = _write(tmp_path, header, rows, images, raw, 0)
    code, _, err = _run_cli(
        [
            "train",
            "--manifest",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--mode",
            "covariates_only",
            "--epochs",
            "1",
        ],
        seconds=120,
    )
    assert code == 2 and err.startswith("osteo: error:") and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
    code, _, err = _run_cli(["evaluate", "--run", str(tmp_path / "run"), "--manifest", str(path)])
    assert code == 2 and "does not exist" in err
