"""Data: storage (local, s3://), the Ray Data sources (raw photos or prepared shards), the prepared
shards, and the work of the prior and prepare jobs. Its public face: ``storage``, ``sources``,
``shards``, ``priors`` (computing, writing, loading a prior), ``prepare`` (photos into shards)."""

__all__ = ["prepare", "priors", "shards", "sources", "storage"]
