"""evaluate_sae against an independent NumPy computation with explicit loops, on a tiny random GPT-2."""

import math

import numpy as np
import pytest
import torch

from mechscope.autoencoders import SAEConfig, SAESplice, SparseAutoencoder
from mechscope.autoencoders.errors import SAEIncompatibleError
from mechscope.autoencoders.evaluation import SAEMetrics, evaluate_sae, format_metrics_table
from mechscope.inference import GPT2, GPT2Config, InvalidInputError, UnknownHookError, ZeroAblate

D = 64
POINT = "blocks.1.hook_attn_out"


@pytest.fixture(scope="module")
def model():
    m = GPT2(GPT2Config(n_layers=2, n_heads=4, d_model=D, n_ctx=128, d_vocab=500))
    m.init_weights(std=0.3, seed=3)  # large weights, so zeroing one activation matters for the loss
    return m.eval()


def _sample(model, rows: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """Token rows sampled from the model itself, so its clean loss is its own entropy and any
    change to an activation raises the expected loss (by the KL divergence)."""
    tokens = torch.randint(0, 500, (rows, 1), generator=gen)
    with torch.no_grad():
        while tokens.shape[1] < length:
            probs = model(tokens)[:, -1].softmax(-1)
            tokens = torch.cat([tokens, torch.multinomial(probs, 1, generator=gen)], 1)
    return tokens


@pytest.fixture(scope="module")
def batches(model):
    gen = torch.Generator().manual_seed(5)
    return [_sample(model, 3, 12, gen), _sample(model, 2, 12, gen)]


def _sae(W_enc, b_enc, W_dec, b_dec, activation="relu", k=None, point=POINT) -> SparseAutoencoder:
    cfg = SAEConfig(d_in=W_enc.shape[0], n_latents=W_enc.shape[1], activation=activation, k=k, hook_point=point)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    return SparseAutoencoder.from_tensors(cfg, {n: torch.as_tensor(t, dtype=torch.float32) for n, t in tensors.items()})


def _random_relu_sae(n_latents=96, seed=0) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    b_enc = torch.randn(n_latents, generator=gen) * 0.1
    b_enc[:7] = -1e4  # seven latents that can never fire
    return _sae(torch.randn(D, n_latents, generator=gen) / D**0.5, b_enc,
                torch.randn(n_latents, D, generator=gen) / n_latents**0.5, torch.randn(D, generator=gen) * 0.1)


def _identity_sae() -> SparseAutoencoder:
    """Identity activation, W_dec = pinv(W_enc): reconstructs every input exactly."""
    gen = torch.Generator().manual_seed(1)
    W_enc = torch.randn(D, 2 * D, generator=gen, dtype=torch.float64)
    return _sae(W_enc, torch.randn(2 * D, generator=gen) * 0.0, torch.linalg.pinv(W_enc), torch.randn(D, generator=gen),
                activation="identity")


def _perfect_relu_sae() -> SparseAutoencoder:
    """ReLU on the code [x, -x]: relu(x) - relu(-x) = x exactly."""
    eye = torch.eye(D)
    return _sae(torch.cat([eye, -eye], 1), torch.zeros(2 * D), torch.cat([eye, -eye], 0), torch.zeros(D))


def _zero_sae() -> SparseAutoencoder:
    return _sae(torch.zeros(D, 32), torch.zeros(32), torch.zeros(32, D), torch.zeros(D))


# ----------------------------------------------------------------------------------- reference
def _log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    out = np.empty_like(logits)
    for i, row in enumerate(logits):
        m = row.max()
        out[i] = row - (m + math.log(np.exp(row - m).sum()))
    return out


def _reference(model, sae, batches, point=POINT) -> dict[str, float]:
    """Every metric from a separate route: a plain capturing hook, SAESplice with its error term
    zeroed by an intervention, a ZeroAblate intervention, and NumPy loops over tokens."""
    W_enc, b_enc = sae.W_enc.detach().double().numpy(), sae.b_enc.detach().double().numpy()
    W_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
    act = {"relu": lambda v: np.maximum(v, 0), "identity": lambda v: v}[sae.config.activation]
    xs, codes, recons = [], [], []
    ce = {"clean": [], "spliced": [], "zero": []}
    kls = []
    for tokens in batches:
        captured = {}
        with torch.no_grad():
            clean = model(tokens, fwd_hooks={point: lambda x, ctx: captured.setdefault("x", x.clone())})
            spliced = model(tokens, splices=[SAESplice(sae, point)],
                            interventions=[ZeroAblate(f"{point}.hook_sae_error")])
            zero = model(tokens, interventions=[ZeroAblate(point)])
        for x in captured["x"].double().numpy().reshape(-1, D):
            code = act((x - b_dec) @ W_enc + b_enc)
            xs.append(x)
            codes.append(code)
            recons.append(code @ W_dec + b_dec)
        toks = tokens.numpy()
        for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            for row in range(toks.shape[0]):
                logp = _log_softmax_rows(logits[row].double().numpy())
                for pos in range(toks.shape[1] - 1):
                    ce[name].append(-logp[pos, toks[row, pos + 1]])
        for row in range(toks.shape[0]):
            p_clean = _log_softmax_rows(clean[row].double().numpy())
            p_spliced = _log_softmax_rows(spliced[row].double().numpy())
            for pos in range(toks.shape[1]):
                kls.append(float(np.sum(np.exp(p_clean[pos]) * (p_clean[pos] - p_spliced[pos]))))
    xs, codes, recons = np.array(xs), np.array(codes), np.array(recons)
    mean = xs.mean(0)
    sse = sum(float(((r - x) ** 2).sum()) for r, x in zip(recons, xs))
    total = sum(float(((x - mean) ** 2).sum()) for x in xs)
    n_latents = codes.shape[1]
    dead = sum(1 for j in range(n_latents) if all(codes[t, j] == 0 for t in range(len(codes))))
    clean_ce, spliced_ce, zero_ce = (float(np.mean(ce[k])) for k in ("clean", "spliced", "zero"))
    return {
        "n_tokens": len(xs), "mse": sse / xs.size, "explained_variance": 1 - sse / total,
        "l0": float(np.mean([np.count_nonzero(c) for c in codes])), "dead_fraction": dead / n_latents,
        "ce_clean": clean_ce, "ce_spliced": spliced_ce, "ce_zero_ablated": zero_ce,
        "ce_loss_recovered": (zero_ce - spliced_ce) / (zero_ce - clean_ce), "kl_div": float(np.mean(kls)),
    }


# ----------------------------------------------------------------------------------- tests
def test_every_metric_matches_an_independent_computation(model, batches):
    sae = _random_relu_sae()
    got = evaluate_sae(model, sae, batches, rows_per_forward=2)
    want = _reference(model, sae, batches)
    assert got.hook_point == POINT and got.n_tokens == want["n_tokens"] == 60
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-4, abs=1e-6), name
    # the metrics are not trivial for this SAE: it is far from perfect and some latents are dead
    assert got.explained_variance < 0.9 and 7 / 96 - 1e-12 <= got.dead_fraction < 1 and got.kl_div > 1e-3
    assert got.ce_zero_ablated - got.ce_clean > 0.01


def test_perfect_saes_recover_everything(model, batches):
    for sae in (_identity_sae(), _perfect_relu_sae()):
        m = evaluate_sae(model, sae, batches)
        assert m.explained_variance == pytest.approx(1.0, abs=1e-5)
        assert m.mse < 1e-9
        assert m.ce_loss_recovered == pytest.approx(1.0, abs=1e-3)
        assert m.ce_spliced == pytest.approx(m.ce_clean, abs=1e-5)
        assert abs(m.kl_div) < 1e-6
    relu = evaluate_sae(model, _perfect_relu_sae(), batches)
    assert relu.l0 == pytest.approx(D, abs=0.5)  # one of x_i, -x_i is positive for each feature


def test_zero_sae_recovers_nothing(model, batches):
    m = evaluate_sae(model, _zero_sae(), batches)
    assert m.ce_loss_recovered == pytest.approx(0.0, abs=1e-9)
    assert m.ce_spliced == pytest.approx(m.ce_zero_ablated, abs=1e-9)
    assert m.l0 == 0 and m.dead_fraction == 1.0
    assert m.ce_zero_ablated > m.ce_clean + 0.01


def test_hook_point_argument_overrides_the_config(model, batches):
    sae = _random_relu_sae()
    other = "blocks.0.hook_mlp_out"
    m = evaluate_sae(model, sae, batches[:1], hook_point=other)
    want = _reference(model, sae, batches[:1], point=other)
    assert m.hook_point == other
    assert m.explained_variance == pytest.approx(want["explained_variance"], rel=1e-4)


def test_bad_inputs_raise_typed_errors(model, batches):
    with pytest.raises(InvalidInputError, match="no tokens"):
        evaluate_sae(model, _zero_sae(), [])
    with pytest.raises(InvalidInputError, match="batch 0 must be a"):
        evaluate_sae(model, _zero_sae(), [torch.zeros(3, 4)])
    with pytest.raises(UnknownHookError, match="blocks.7.hook_attn_out"):
        evaluate_sae(model, _zero_sae(), batches, hook_point="blocks.7.hook_attn_out")
    with pytest.raises(SAEIncompatibleError, match="width 256"):
        evaluate_sae(model, _zero_sae(), batches, hook_point="blocks.0.mlp.hook_post")
    with pytest.raises(InvalidInputError, match="rows_per_forward"):
        evaluate_sae(model, _zero_sae(), batches, rows_per_forward=0)
    no_point = SparseAutoencoder(SAEConfig(d_in=D, n_latents=8))
    with pytest.raises(InvalidInputError, match="names no hook point"):
        evaluate_sae(model, no_point, batches)


def test_metrics_table_has_a_row_per_sae():
    rows = [SAEMetrics(f"blocks.{i}.hook_mlp_out", 100, 0.01, 0.95 + i / 100, 31.5, 0.02, 3.0, 3.1, 5.0, 0.95, 0.05)
            for i in range(2)]
    table = format_metrics_table(rows).splitlines()
    assert len(table) == 4 and table[0].startswith("| hook point | EV |")
    assert table[2].startswith("| blocks.0.hook_mlp_out | 0.9500 | 0.01 | 31.5 | 2.0% | 3.0000 | 3.1000 | 5.0000 | 0.9500 |")
    assert "| blocks.1.hook_mlp_out | 0.9600 |" in table[3]
    with pytest.raises(InvalidInputError):
        format_metrics_table([])
