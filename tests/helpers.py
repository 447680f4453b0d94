"""Helpers shared by test modules in several folders: ``import helpers`` (pyproject.toml's pytest
``pythonpath`` puts tests/ on sys.path; a plain ``tests`` package would be shadowed by the
``tests`` package a dependency installs). Fixtures live in conftest.py; this module holds what a
test module needs at import time or calls directly. No TensorFlow at import: the osteo_tf imports
are inside the functions (tests/serving/test_client.py runs without it)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path


def experiment_maker(base: dict):
    """``make(**changes)`` → the parsed experiment config of ``base`` with those top-level keys replaced."""
    from osteo_tf.experiments.config import parse_experiment

    def make(**changes):
        return parse_experiment({**base, **changes})

    return make


def stored(out: Path) -> list[str]:
    """The file names in an experiment folder's results/ store, sorted."""
    return sorted(p.name for p in (out / "results").iterdir())


def fit_record(
    backbone: str,
    mode: str,
    repeat: int,
    fold: int,
    images,
    labels,
    probability,
    *,
    config_hash: str,
    seed: int,
    epochs_run: int,
    best_epoch: int,
    finished_at: str,
    fusion: str | None = None,
    model: str | None = None,
    seconds: float = 1.0,
) -> dict:
    """A fabricated ``results/<fit_id>.json`` record as the experiment runner writes it (experiment
    "fake"): fit id ``<backbone>__<model or mode>__rRR__fFF``, val and test metrics both of
    ``probability``, one test prediction per image (its own patient). ``fusion`` and ``model``
    (given together, for the fusion variants' records) follow ``mode``."""
    from osteo_tf.evaluation.metrics import binary_metrics

    fit_id = f"{backbone}__{model or mode}__r{repeat:02d}__f{fold:02d}"
    record = {"fit_id": fit_id, "config_hash": config_hash, "experiment": "fake", "backbone": backbone, "mode": mode}
    if model is not None:
        record.update(fusion=fusion, model=model)
    record.update(
        {
            "repeat": repeat,
            "fold": fold,
            "seed": seed,
            "metrics": {"val": binary_metrics(labels, probability), "test": binary_metrics(labels, probability)},
            "test_predictions": [
                {"image": i, "patient_id": i, "label": int(y), "probability": float(p)}
                for i, y, p in zip(images, labels, probability)
            ],
            "seconds": seconds,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "run_dir": f"runs/{fit_id}",
            "finished_at": finished_at,
        }
    )
    return record


class JSONHandler(http.server.BaseHTTPRequestHandler):
    """A fake server's request handler: ``_reply(status, value)`` answers JSON; no request log on stderr."""

    def _reply(self, status: int, value) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serves ``handler`` on a free local port in a daemon thread; yields its ``http://127.0.0.1:PORT``."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()


def backbone_outputs(model, size: int, seed: int = 0):
    """``model``'s features for two random [0, 255] images of ``size`` px, checked to differ between
    the two (weights under which every input gives the same output would make equal outputs meaningless)."""
    import keras
    import numpy as np

    images = np.random.default_rng(seed).uniform(0, 255, (2, size, size, 3)).astype("float32")
    features = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(features[0] - features[1]).max() > 1e-2 * np.abs(features).max()  # the input matters
    return features
