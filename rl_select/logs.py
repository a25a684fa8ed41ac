"""Logging set-up shared by the command line and by processes it starts (Ray Tune trials, workers)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings


def setup_logging(verbose: bool = False) -> None:
    """Plain-text logging to stderr; quiet third-party libraries unless ``verbose``."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not verbose:
        warnings.filterwarnings("ignore")
        for noisy in ("transformers", "datasets", "huggingface_hub", "sentence_transformers", "bm25s"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        with contextlib.suppress(ImportError):
            import transformers  # deferred: loads transformers and httpx

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
