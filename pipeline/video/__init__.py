"""`colorize video`: the job, PyAV decoding/encoding, temporal consistency."""
