"""Node datasets and pages for the explanation tests: a small real dataset built from a random
model (every node kind), and synthetic pages whose activations follow a known rule."""

from __future__ import annotations

import numpy as np

from mechscope.datasets.node_dataset import NodeDataset
from mechscope.datasets.node_dataset.builder import build_node_dataset
from mechscope.datasets.node_dataset.records import ExampleWindow, NodePageData
from mechscope.datasets.stores import BlobStore

from .node_dataset_helpers import CONFIG, corpus, small_model, small_saes


def build_small_dataset(store: BlobStore, prefix: str = "ds") -> NodeDataset:
    """2 layers x (256 neurons + 4 heads) and two SAEs (96 + 48 latents): 1,176 nodes."""
    build_node_dataset(small_model(), corpus(), store, prefix, saes=small_saes(), config=CONFIG, progress=False)
    return NodeDataset(store, prefix)


WORDS = [" the", " cat", " sat", " on", " mat", " and", " year", " 17", " 18", " in", " Paris", " dog", ",", "."]


def synthetic_page(rule, *, seed: int = 0, n_top: int = 20, n_random: int = 20, length: int = 16,  # type: ignore[no-untyped-def]
                   kind: str = "sae_latent", index: int = 0, words: list[str] | None = None) -> NodePageData:
    """A page whose activation at token i of a window is ``rule(tokens, i, position)``; top examples
    are the windows with the largest activations out of many random ones."""
    words = words or WORDS
    rng = np.random.default_rng(seed)

    def window(start: int) -> ExampleWindow:
        tokens = [words[j] for j in rng.integers(0, len(words), length)]
        acts = [float(rule(tokens, i, start + i)) for i in range(length)]
        best = int(np.argmax(acts))
        return ExampleWindow(tokens=tokens, activations=acts, max_activation=acts[best], max_position=best, start=start)

    pool = [window(int(rng.integers(0, 64))) for _ in range(400)]
    pool.sort(key=lambda w: -w.max_activation)
    top = pool[:n_top]
    random = [window(int(rng.integers(0, 64))) for _ in range(n_random)]
    quantiles = [pool[100 + 20 * q: 100 + 20 * q + 4] for q in range(4)]
    return NodePageData(kind=kind, layer=1, index=index, top_examples=top, random_sample=random,
                        quantile_samples=quantiles, hook_point="blocks.1.hook_mlp_out" if kind == "sae_latent" else None)
