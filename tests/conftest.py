"""Shared fixtures: small random-weight GPT-2 checkpoints in Hugging Face's format, with the
transformers model that wrote them as an independent reference."""

from __future__ import annotations

import pytest
import torch


def _random_hf_checkpoint(tmp_path_factory, name: str, **config):
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel
    torch.manual_seed(1234)
    hf = GPT2LMHeadModel(HFConfig(**config)).eval()
    directory = tmp_path_factory.mktemp(name)
    hf.save_pretrained(directory)
    return hf, directory


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory):
    """(transformers model, directory): 3 layers, 4 heads, d_model 64, context 64."""
    return _random_hf_checkpoint(tmp_path_factory, "small", n_layer=3, n_head=4, n_embd=64, n_positions=64)


@pytest.fixture(scope="session")
def small_model(small_checkpoint):
    from mechscope.inference import load_model
    return load_model(small_checkpoint[1])


@pytest.fixture(scope="session")
def gpt2_small_shape_checkpoint(tmp_path_factory):
    """(transformers model, directory) with gpt2-small's exact shape and random weights."""
    return _random_hf_checkpoint(tmp_path_factory, "gpt2_small_shape", n_layer=12, n_head=12, n_embd=768)


@pytest.fixture(autouse=True, scope="module")
def _torch_threads_restored():
    """A test module that sets torch's thread count (e.g. to 1, for exact build comparisons) must
    not change it for the modules after it: float sums split over a different number of threads
    round differently, and the golden answers compare bytes."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
