"""Deployment: SavedModel export with a raw-input signature, TF Serving layout, client, batch prediction.

- :mod:`.spec` — what the served model needs from its run (inputs, encoder, threshold); no TF.
- :mod:`.signature` — the serving graph: PNG/JPEG bytes + raw covariates → probability, label.
- :mod:`.archive` — :func:`export_run` to ``saved_models/<name>/<version>/`` (atomic).
- :mod:`.model_card` — ``assets/model_card.json``.
- :mod:`.client` — TF Serving REST client (``instances`` format, ``{"b64": …}``); no TF.
- :mod:`.predict` — :func:`predict_manifest`, locally or against a server, same CSV.

Import from the submodules (TensorFlow loads only with :mod:`.signature` / :mod:`.archive`);
the package-level names are :data:`osteo_tf.export_run` and :data:`osteo_tf.predict_manifest`.
"""

__all__: list[str] = []
