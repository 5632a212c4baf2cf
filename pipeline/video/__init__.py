"""A model on videos: ``colorize`` (frame by frame, one video in-process or per Ray Data task),
``codec`` (PyAV decoding/encoding), ``temporal`` (colour that holds still over time), ``threads``
(the thread pools of the model, the flow and the codecs)."""

__all__ = ["codec", "colorize", "temporal", "threads"]
