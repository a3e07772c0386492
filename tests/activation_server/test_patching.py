"""Patching sweeps and path patching against plain patched forward passes."""

import pytest
import torch

from mechscope.activation_server.engine.patching import path_patching, patching_sweep
from mechscope.activation_server.schemas import LossSpec, PathPatchingRequest, PatchingSweepRequest
from mechscope.inference import Patch, gpt2_tokenizer

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
LOSS = LossSpec(targets=[" Mary"], distractors=[" John"])


def _loss(logits):
    tok = gpt2_tokenizer()
    return float(logits[0, -1, tok.encode(" Mary")[0]] - logits[0, -1, tok.encode(" John")[0]])


@pytest.mark.parametrize("kind", ["heads", "resid_pre", "attn_out", "mlp_out", "heads_by_position"])
def test_sweep_cells_equal_single_patched_runs(small_model, kind):
    tok = gpt2_tokenizer()
    clean = torch.tensor([tok.encode(CLEAN, prepend_bos=True)])
    corrupted = torch.tensor([tok.encode(CORRUPTED, prepend_bos=True)])
    result = patching_sweep(small_model, PatchingSweepRequest(clean=CLEAN, corrupted=CORRUPTED, loss=LOSS, kind=kind))
    hook = {"heads": "attn.hook_z", "heads_by_position": "attn.hook_z", "resid_pre": "hook_resid_pre",
            "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}[kind]
    with torch.no_grad():
        clean_loss, corrupted_loss = _loss(small_model(clean)), _loss(small_model(corrupted))
        raw = torch.tensor(result.raw_loss)
        for layer in (0, 2):
            name = f"blocks.{layer}.{hook}"
            _, cache = small_model.run_with_cache(clean, names=[name])
            sel = {"head": 1} if kind == "heads" else {"head": 1, "pos": 9} if kind == "heads_by_position" else {"pos": 9}
            patched = _loss(small_model(corrupted, interventions=[Patch(name, source=cache[name], **sel)]))
            cell = raw[layer, 1, 9] if kind == "heads_by_position" else raw[layer, sel.get("head", 9)]
            assert float(cell) == pytest.approx(patched, abs=1e-4)
    assert result.clean_loss == pytest.approx(clean_loss, abs=1e-5)
    assert result.corrupted_loss == pytest.approx(corrupted_loss, abs=1e-5)


def test_path_patching_every_head_to_the_logits_equals_patching_all_heads(small_model):
    # Senders = all heads, straight to the logits: every head takes its corrupted output and the
    # MLPs recompute on the clean tokens. Reference: the same run done by hand.
    tok = gpt2_tokenizer()
    clean = torch.tensor([tok.encode(CLEAN, prepend_bos=True)])
    corrupted = torch.tensor([tok.encode(CORRUPTED, prepend_bos=True)])
    names = [f"blocks.{l}.attn.hook_z" for l in range(small_model.cfg.n_layers)]
    _, corr = small_model.run_with_cache(corrupted, names=names)
    senders = [(l, h) for l in range(small_model.cfg.n_layers) for h in range(small_model.cfg.n_heads)]
    result = path_patching(small_model, PathPatchingRequest(clean=CLEAN, corrupted=CORRUPTED, loss=LOSS, senders=senders))
    with torch.no_grad():
        expected = _loss(small_model(clean, interventions=[Patch(n, source=corr[n]) for n in names]))
    assert result.patched_loss == pytest.approx(expected, abs=1e-4)
