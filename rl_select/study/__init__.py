"""Studies: multi-step research protocols built on the library (headroom analysis, the learned-selector table)."""
