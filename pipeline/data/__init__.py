"""Data: storage (local, s3://), the Ray Data sources (raw photos or prepared shards), and the
data jobs (`colorize prepare`, `colorize priors`)."""
