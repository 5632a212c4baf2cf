"""A model on videos: ``colorize`` (frame by frame, one video in-process or per Ray Data task),
``codec`` (PyAV decoding/encoding), ``temporal`` (colour that holds still over time)."""

__all__ = ["codec", "colorize", "temporal"]
