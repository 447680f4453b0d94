"""The Ray executor: each pending fit of an experiment runs as a Ray task, on one machine or a cluster.

Why: the fits of a grid are independent, so a study scales out by running many fits at once —
several small fits sharing one GPU through fractional ``num_gpus``, and as many GPUs as the
cluster has — rather than by distributing one fit. ``RayExecutor(...)`` is what
``osteo experiment --executor ray`` and ``run_experiment(..., executor=...)`` use.

What: the driver prepares the experiment folder, the phantom cohort and the validated cohort
table once (``run_experiment`` → ``load_fit_cohort``), puts the table in Ray's object store
and submits one task per pending fit. A task calls :func:`osteo_tf.experiments.fits.run_fit`,
the same step as the local runner, so both executors write the same store (``results/<fit_id>.json``
written atomically, ``runs/<fit_id>/``) and resume each other's folders. Tasks read the images
and write their results through the file system: the experiment folder, the manifest and its
images must be on a file system every Ray node mounts at the same path.

Failures: ``max_retries`` re-runs a task whose worker died (killed, out of memory, node lost);
the retry resumes the fit from its last finished epoch and writes its record once — never a
lost or duplicate record. An exception raised by a fit is not retried (``retry_exceptions``
off): fits are seeded, so a bad image or a bug fails the same way again. The first such
failure cancels the fits still running (their finished records stay; rerun to resume) and is
raised, an :class:`OsteoInputError` with its own message.

``ray`` is imported only when a Ray executor runs (``pip install 'osteo_tf[ray]'``).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.fits import Fit, Progress, load_fit_cohort, run_fit, say
from osteo_tf.optional import optional_import

if TYPE_CHECKING:
    from osteo_tf.experiments.config import ExperimentConfig

__all__ = ["import_ray", "parse_gpus_per_fit", "RayExecutor"]


def import_ray() -> Any:
    """The ``ray`` module, or an OsteoInputError saying how to install it."""
    return optional_import("ray", purpose="executor ray", parameter="executor")


def parse_gpus_per_fit(value: str | float) -> float:
    """GPUs per fit: 0 (CPU only), a whole number (a fit on several GPUs), or 1/k (k fits per GPU).

    Fractions must divide a GPU evenly (0.5, 0.25, 0.2, 1/3, …): 0.3 would strand a tenth of
    every GPU. Accepts "0.25" or "1/4"; anything else raises OsteoInputError.
    """
    text = str(value).strip()
    try:
        number = (float(text.split("/")[0]) / float(text.split("/")[1])) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, IndexError):
        number = math.nan
    whole = number >= 0 and number == int(number) if math.isfinite(number) else False
    share = 0 < number < 1 and abs(1 / number - round(1 / number)) < 0.01 * round(1 / number)
    if not (whole or share):
        raise OsteoInputError(
            f"gpus_per_fit must be 0, a whole number of GPUs, or a fraction 1/k that divides a GPU "
            f"evenly (0.5, 0.25, 0.2, …), got {text!r}",
            parameter="gpus_per_fit",
        )
    return float(number) if whole else round(1 / round(1 / number), 4)  # Ray counts GPUs in 1/10,000ths


@dataclass(frozen=True)
class RayExecutor:
    """Runs fits as Ray tasks. ``address``: an existing cluster (``"auto"``: the one this node
    joined with ``ray start``; or ``"HOST:6379"``); None starts a local Ray with this machine's
    CPUs (or reuses one already started in this process). ``gpus_per_fit``: None = 1 when the cluster has GPUs,
    else 0. ``cpus_per_fit``: CPUs reserved per fit; a fit's TensorFlow uses that many threads.
    ``max_retries``: re-runs of a fit whose worker died."""

    address: str | None = None
    gpus_per_fit: float | str | None = None
    cpus_per_fit: float = 1.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.gpus_per_fit is not None:
            object.__setattr__(self, "gpus_per_fit", parse_gpus_per_fit(self.gpus_per_fit))
        if not (isinstance(self.cpus_per_fit, (int, float)) and self.cpus_per_fit > 0):
            raise OsteoInputError(
                f"cpus_per_fit must be a number > 0, got {self.cpus_per_fit!r}", parameter="cpus_per_fit"
            )
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise OsteoInputError(
                f"max_retries must be a whole number >= 0, got {self.max_retries!r}", parameter="max_retries"
            )

    def check(self) -> None:
        """Ray must be importable (checked before the experiment folder is touched)."""
        import_ray()

    def __call__(
        self,
        config: ExperimentConfig,
        out: Path,
        manifest: Path,
        todo: list[Fit],
        verbose: int | str = 0,
        fit_function: Callable | None = None,
    ) -> None:
        """Runs the fits ``todo`` of ``config`` into ``out`` (prepared by run_experiment) and waits for them."""
        ray = import_ray()
        started_here = _connect(ray, self.address)
        try:
            gpus = self._gpus(ray)
            manifest_config, cohort = load_fit_cohort(config, manifest, todo)
            task = ray.remote(
                num_cpus=self.cpus_per_fit, num_gpus=gpus, max_retries=self.max_retries, retry_exceptions=False
            )(_fit_task)
            cohort_ref = ray.put(cohort)
            out, manifest = Path(out).resolve(), Path(manifest).resolve()
            pending = {
                task.remote(
                    config, out, manifest, fit, cohort_ref, manifest_config, verbose, fit_function, self.cpus_per_fit
                ): fit
                for fit in todo
            }
            say(
                f"submitted {len(todo)} fit(s) to Ray ({_describe(ray)}): {self.cpus_per_fit:g} CPU and {gpus:g} GPU "
                f"per fit, up to {self.max_retries} retries of a fit whose worker dies"
            )
            _collect(ray, pending, Progress(len(todo)))
        finally:
            if started_here:
                ray.shutdown()

    def _gpus(self, ray: Any) -> float:
        """GPUs per fit, refused when no node of the cluster could run such a fit (it would wait forever)."""
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        gpus = self.gpus_per_fit
        if gpus is None:
            gpus = 1.0 if any(r.get("GPU", 0) > 0 for r in nodes) else 0.0
        if not any(r.get("CPU", 0) >= self.cpus_per_fit and r.get("GPU", 0) >= gpus for r in nodes):
            largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
            raise OsteoInputError(
                f"no node of the Ray cluster has {self.cpus_per_fit:g} CPU and {gpus:g} GPU for one fit (largest node: "
                f"{largest[0]:g} CPU, {largest[1]:g} GPU); lower cpus_per_fit=, or pass gpus_per_fit=0 to train "
                "on CPUs",
                parameter="cpus_per_fit",
            )
        return gpus


def _connect(ray: Any, address: str | None) -> bool:
    """Connects to ``address`` or starts a local Ray; returns whether this call started it (then we shut it down)."""
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)  # not RAY_ADDRESS's cluster
    except ConnectionError as error:
        raise OsteoInputError(
            f"cannot connect to the Ray cluster at address {address} ({error}); start it with "
            "`ray start --head` on the head node, or leave out address= for a local Ray. If `ray "
            "start` said token authentication is enabled, export RAY_AUTH_MODE=token here too",
            parameter="address",
        ) from None
    return True


def _check_reachable(address: str | None) -> None:
    """A HOST:PORT address must accept a connection: Ray itself would wait for it without end."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise OsteoInputError(
            f"no Ray cluster answers at address {address} ({error}); start one with "
            "`ray start --head` there, or use address=auto on a node of the cluster",
            parameter="address",
        ) from None


def _describe(ray: Any) -> str:
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"{nodes} node(s), {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def _collect(ray: Any, pending: dict, progress: Any) -> None:
    """Waits for the tasks, printing each finished fit; the first failure cancels the rest and is raised."""
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        fit = pending.pop(ready[0])
        try:
            record, trained = ray.get(ready[0])
        except Exception as error:  # noqa: BLE001 (re-raised below, unwrapped)
            for ref in pending:
                ray.cancel(ref)
            raise _unwrap(ray, error, fit.fit_id) from None
        progress.finished(record, trained)


def _unwrap(ray: Any, error: Exception, fit_id: str) -> Exception:
    """A fit's failure as the driver raises it: input errors and dead workers as OsteoInputError."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, OsteoInputError):
        return OsteoInputError(f"fit {fit_id}: {cause}")
    if isinstance(
        error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError)
    ):
        return OsteoInputError(
            f"fit {fit_id}: its Ray worker died on every attempt ({type(error).__name__}); often memory: give each "
            f"fit a larger share (gpus_per_fit=, cpus_per_fit=) or a smaller batch, or raise max_retries=. Finished "
            f"fits are kept: rerun the same command to resume.\n{error}"
        )
    return error


def _fit_task(
    config, out: Path, manifest: Path, fit, cohort, manifest_config, verbose, fit_function, cpus: float
) -> tuple[dict, bool]:
    """One fit in a Ray worker: checks the shared folder, sets up TensorFlow, calls fits.run_fit."""
    if not (out / "experiment.yaml").is_file():
        raise OsteoInputError(
            f"{out} is not visible on Ray node {socket.gethostname()}: the experiment folder must be "
            "on a file system every node mounts at the same path"
        )
    _setup_tensorflow(cpus)

    return run_fit(
        config, out, manifest, fit, cohort, manifest_config=manifest_config, verbose=verbose, fit_function=fit_function
    )


def _setup_tensorflow(cpus: float) -> None:
    """Quiet TensorFlow, grow GPU memory on demand (fits share a GPU), use ``cpus`` threads."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # else the first fit takes the whole GPU
    import tensorflow as tf

    threads = max(1, int(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # this worker ran a fit before: TensorFlow is already set up the same way
