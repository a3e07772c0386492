"""The shipped model organism's node dataset: built on first use (``make serve``), reused after.

The default corpus is 3,000 task-suite rows of 128 tokens (384k tokens; seed 0, rows from 10,000,000
on, far from the rows the organism trains on first): a few minutes on 2 cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .builder import NodeDatasetBuilder
from .corpus import TaskSuiteCorpus
from .config import BuildConfig
from .records import MANIFEST_KEY
from ..stores import LocalBlobStore

DEFAULT_ORGANISM_ROWS = 3000
ORGANISM_CORPUS_SEED = 0
ORGANISM_CORPUS_FIRST_ROW = 10_000_000
ORGANISM_PREFIX = "organism"


def organism_corpus(rows: int = DEFAULT_ORGANISM_ROWS) -> TaskSuiteCorpus:
    return TaskSuiteCorpus(seed=ORGANISM_CORPUS_SEED, num_rows=rows, first_row=ORGANISM_CORPUS_FIRST_ROW)


def ensure_organism_dataset(store_dir: str | Path, *, rows: int = DEFAULT_ORGANISM_ROWS, saes: Sequence = (),
                            config: BuildConfig | None = None, progress: bool = True, model=None) -> Path:  # type: ignore[no-untyped-def]
    """Return the directory of the organism's node dataset under ``store_dir``, building it first if
    it is missing, unfinished (a killed build resumes) or made from other weights, SAEs or settings.

    A finished, matching dataset is detected by its manifest's fingerprint (hashing the organism's
    weights: well under a second), so calling this at every server start is cheap.
    """
    from mechscope.inference import load_model
    store = LocalBlobStore(store_dir)
    model = model if model is not None else load_model("organism")
    builder = NodeDatasetBuilder(model, organism_corpus(rows), store, ORGANISM_PREFIX, saes=saes,
                                 config=config or BuildConfig(), model_name="organism", progress=progress)
    builder.run(resume=True, overwrite=True)
    path = store.root / ORGANISM_PREFIX
    assert (path / MANIFEST_KEY).exists()
    return path
