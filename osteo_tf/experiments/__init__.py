"""Experiment grids: YAML configs (:mod:`.config`) and the resumable, shardable runner (:mod:`.runner`)."""
