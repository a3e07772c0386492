"""Node datasets: for every node of a model (MLP neurons, attention heads, SAE latents), the
top-activating examples, random and quantile samples, a histogram and the tokens it promotes, built
in one pass over a corpus and stored as packed shards in a blob store (local or Azure).

- :mod:`.builder` — one pass over a corpus (resumable, checkpointed), :mod:`.state` — what a pass
  keeps per node group, :mod:`.corpus` — corpora, :mod:`.effects` — promoted tokens;
- :mod:`.records` — the stored layout (shards, index, manifest written last);
- :mod:`.reader` — a node's page from one byte range, and TDB's public datasets read or written
  through the same interface;
- :mod:`.organism` — the shipped model organism's dataset, built on first use.
"""

from .builder import NodeDatasetBuilder, build_node_dataset
from .reader import NodeDataset, TdbNodeDataset, export_tdb
from .config import BuildConfig

__all__ = ["BuildConfig", "NodeDataset", "NodeDatasetBuilder", "TdbNodeDataset", "build_node_dataset", "export_tdb"]
