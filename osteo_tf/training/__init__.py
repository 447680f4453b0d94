"""Training: one fit end to end (:mod:`.train`), its crash-safe callbacks (:mod:`.callbacks`) and
the hardware choices (:mod:`.hardware`: distribution strategy, precision, XLA).

The run folder and the training options live in :mod:`osteo_tf.runs`. Import from the submodules.
"""

__all__: list[str] = []
