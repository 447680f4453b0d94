"""Experiment grids: YAML configs (:mod:`.config`), the resumable, shardable runner (:mod:`.runner`),
one fit and the executors (:mod:`.fits`, :mod:`.ray_executor`), the results store (:mod:`.results`),
the report (:mod:`.report`) and the cost estimate (:mod:`.estimate`). Import from the submodules."""

__all__: list[str] = []
