"""The TRIPOD+AI / CLAIM checklist table of the reports: where each item's evidence is.

TRIPOD+AI: Collins et al., BMJ 2024;385:e078378. CLAIM 2024: Tejani et al., Radiology: AI
2024, doi 10.1148/ryai.240300. Each :data:`ITEMS` row names the evidence (an anchor of the
report page) that answers it; a report fills the row with a link when its page has that
anchor, says why when it does not, and leaves the items no tool can answer (ethics approval,
funding, the study's setting) to the authors: "provide yourself". The list covers the items
a run or experiment folder holds evidence for, plus the author-only items most often missed;
it is not the full checklist, and the table says so.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["ITEMS", "checklist_table"]

PROVIDE = "provide yourself"

#: (standard and item, topic, evidence anchor or None for author-only items).
ITEMS: tuple[tuple[str, str, str | None], ...] = (
    ("TRIPOD+AI 5–6 · CLAIM", "Source of data, participants, setting, dates", None),
    ("TRIPOD+AI 7", "Data preparation (image size, intensity, covariate encoding)", "model"),
    ("TRIPOD+AI 8", "Outcome definition (DXA T-score ≤ −2.5) and how it was assessed", "model"),
    ("TRIPOD+AI 9", "Predictors (covariates, image inputs)", "model"),
    ("TRIPOD+AI 10 · CLAIM 21", "Sample size", "sample-size"),
    ("TRIPOD+AI 11", "Missing data and how they were handled", "model"),
    ("TRIPOD+AI 12a · CLAIM 19–20", "Data partitions (patient-level split)", "cohort"),
    ("TRIPOD+AI 12c", "Model type, building and internal validation", "model"),
    ("TRIPOD+AI 12e · CLAIM 28", "Performance measures: discrimination", "discrimination"),
    ("TRIPOD+AI 12e", "Performance measures: calibration", "calibration"),
    ("TRIPOD+AI 12e", "Performance measures: clinical utility (decision curve)", "decision-curve"),
    ("TRIPOD+AI 12f", "Model updating / recalibration", "calibration"),
    ("TRIPOD+AI 14", "Fairness: performance across groups", "subgroups"),
    ("TRIPOD+AI 15", "Model output and decision threshold", "threshold"),
    ("TRIPOD+AI 17", "Ethics approval and consent", None),
    ("TRIPOD+AI 18", "Funding, conflicts of interest, protocol, registration, data and code availability", None),
    ("TRIPOD+AI 20 · CLAIM 36", "Participant characteristics per partition", "cohort"),
    ("TRIPOD+AI 23a · CLAIM 29", "Performance with confidence intervals", "discrimination"),
    ("TRIPOD+AI 23b · CLAIM 32–33", "Performance in subgroups, sites and clusters; external testing", "subgroups"),
    ("CLAIM 30", "Robustness across repeated fits", "repeats"),
    ("CLAIM 31", "Explainability (Grad-CAM) and its validation", "failures"),
    ("CLAIM 39", "Failure analysis: the most confident errors", "failures"),
)


def checklist_table(anchors: dict[str, str], missing: dict[str, str] | None = None) -> pd.DataFrame:
    """The checklist as a table for a report page.

    Args:
        anchors: evidence anchor → section title, for the sections the page has.
        missing: evidence anchor → why this report has no such section (e.g. "one fit per
            model: see the experiment report").

    Returns:
        Columns ``item``, ``topic``, ``where`` (``"§ <title> (#anchor)"``, the reason it is
        missing, or "provide yourself").
    """
    missing = missing or {}
    rows = []
    for item, topic, anchor in ITEMS:
        if anchor is None:
            where = PROVIDE
        elif anchor in anchors:
            where = f"§ {anchors[anchor]} (#{anchor})"
        else:
            where = missing.get(anchor, f"not in this report; {PROVIDE}")
        rows.append({"item": item, "topic": topic, "where": where})
    return pd.DataFrame(rows)
