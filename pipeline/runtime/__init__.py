"""Run-time helpers every job uses, no Ray, no storage. Its public face:

- ``formats``: the one table of file formats: what serve, infer, video and the MLflow model read and write
- ``outputs``: output names (inside the output root, never over an input, collisions and existing files)
- ``made_with``: the rerun rule (the settings a result records, and what differs on a rerun)
- ``progress``: progress bars;  ``stops``: SIGTERM like Ctrl-C, half-written outputs removed
- ``work_limits``: the per-photo work bound, checked on the header before decoding
"""

__all__ = ["formats", "made_with", "outputs", "progress", "stops", "work_limits"]
