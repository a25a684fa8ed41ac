"""Exported selector policies: the format, the exporter (training side) and the light runtime.

``from rl_select.export import load_selector`` imports only the runtime (numpy, onnxruntime, faiss); the
exporter lives in :mod:`rl_select.export.exporter` and needs the training stack.
"""

from rl_select.export.runtime import Demonstration, Selector, load_selector

__all__ = ["Demonstration", "Selector", "load_selector"]
