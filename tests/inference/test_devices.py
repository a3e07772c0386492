"""--device / --dtype: parsing, and the plumbing through run, serve, datasets build and SAE
evaluation (on the CPU: the placement reaches the model and the SAEs, and the bfloat16/float16 paths
give results close to float32)."""

from __future__ import annotations

import argparse

import pytest
import torch

from mechscope.inference import load_model
from mechscope.inference.devices import Placement, add_device_arguments, resolve_device, resolve_dtype
from mechscope.inference.errors import InvalidInputError

IOI = "When Mary and John went to the store, John gave a drink to"


def test_auto_is_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:-1", ""])
def test_unknown_device_names_the_field(spec):
    if spec == "":
        assert resolve_device(spec).type in ("cpu", "cuda")   # empty means auto
        return
    with pytest.raises(InvalidInputError) as e:
        resolve_device(spec)
    assert e.value.field == "device" and "cuda:N" in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="no CUDA GPU"):
        resolve_device("cuda:1")


def test_dtypes():
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("torch.float16") is torch.float16
    assert Placement.resolve("cpu", "float16") == Placement("cpu", "float16")
    with pytest.raises(InvalidInputError) as e:
        resolve_dtype("int8")
    assert e.value.field == "dtype"


def test_flags_and_environment():
    p = argparse.ArgumentParser()
    add_device_arguments(p, env={"MECHSCOPE_DEVICE": "cpu", "MECHSCOPE_DTYPE": "bfloat16"})
    args = p.parse_args([])
    assert (args.device, args.dtype) == ("cpu", "bfloat16")
    assert p.parse_args(["--dtype", "float16"]).dtype == "float16"
    with pytest.raises(SystemExit):
        p.parse_args(["--dtype", "float64"])


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.15), (torch.float16, 0.02)])
def test_half_precision_logits_are_close_to_float32(small_checkpoint, dtype, tol):
    from mechscope.inference import gpt2_tokenizer
    tokens, mask = gpt2_tokenizer().to_tokens([IOI, "The capital of Texas is"])
    ref = load_model(small_checkpoint[1])(tokens, mask)
    model = load_model(small_checkpoint[1], dtype=dtype, device="cpu")
    assert next(model.parameters()).dtype == dtype
    out = model(tokens, mask)
    assert out.dtype == dtype
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() < tol * scale


def test_serve_flags_reach_the_engine_model_and_saes(small_checkpoint, tmp_path):
    from mechscope.activation_server.cli import build_parser
    from mechscope.activation_server.engine.loading import load_engine
    from mechscope.activation_server.cli.serve import config_from_args, engine_spec
    from mechscope.autoencoders import save_sae
    from tests.support.http_fixtures import random_sae
    save_sae(random_sae("blocks.1.hook_mlp_out", 64, 0), tmp_path / "sae")
    args = build_parser().parse_args(["serve", "--model", str(small_checkpoint[1]), "--sae", str(tmp_path / "sae"),
                                      "--device", "cpu", "--dtype", "bfloat16", "--compute-processes", "2"])
    spec = engine_spec(args)
    assert (spec.device, spec.dtype) == ("cpu", "bfloat16")
    assert config_from_args(args).compute_processes == 2      # the CPU keeps its compute processes
    engine = load_engine(spec, verbose=False)
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for sae in engine.saes.values() for p in sae.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in engine.model.parameters()} == {"cpu"}


def test_engine_in_bfloat16_answers_close_to_float32(small_checkpoint):
    from mechscope.activation_server.engine import Engine
    from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec
    request = AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LossSpec(targets=[" Mary"], distractors=[" John"]),
                                 top_k=5)
    ref = Engine(load_model(small_checkpoint[1])).attribute(request)
    half = Engine(load_model(small_checkpoint[1], dtype=torch.bfloat16)).attribute(request)
    assert abs(half.prompts[0].loss - ref.prompts[0].loss) < 0.05 * max(1.0, abs(ref.prompts[0].loss))
    assert half.prompts[0].token_ids == ref.prompts[0].token_ids


def test_run_command_in_bfloat16(small_checkpoint, capsys):
    from mechscope.activation_server.cli import main
    assert main(["run", IOI, "--model", str(small_checkpoint[1]), "--top-k", "3", "--device", "cpu"]) == 0
    ref = capsys.readouterr().out
    assert main(["run", IOI, "--model", str(small_checkpoint[1]), "--top-k", "3", "--dtype", "bfloat16"]) == 0
    half = capsys.readouterr().out
    top = [line.split()[1] for line in ref.splitlines()[3:]]
    assert top[0] in half      # the most likely token is still listed


def test_datasets_build_in_bfloat16(tmp_path, capsys):
    from mechscope.activation_server.cli.datasets import add_datasets_subcommands
    from mechscope.inference import save_pretrained
    from tests.datasets.node_dataset_helpers import small_model
    save_pretrained(small_model(), tmp_path / "model")
    p = argparse.ArgumentParser()
    add_datasets_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["datasets", "build", "--model", str(tmp_path / "model"), "--rows", "4", "--n-ctx", "40",
                         "--batch-size", "4", "--kinds", "mlp_neuron", "--out", str(tmp_path / "ds"), "--quiet",
                         "--device", "cpu", "--dtype", "bfloat16"])
    assert args.func(args) == 0 and "mlp_neuron" in capsys.readouterr().out


def test_sae_evaluation_with_a_bfloat16_model(small_checkpoint):
    from mechscope.autoencoders.evaluation import evaluate_sae
    from tests.support.http_fixtures import random_sae
    sae = random_sae("blocks.1.hook_mlp_out", 64, 0)
    tokens = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    ref = evaluate_sae(load_model(small_checkpoint[1]), sae, [tokens])
    half = evaluate_sae(load_model(small_checkpoint[1], dtype=torch.bfloat16), sae, [tokens])
    assert half.n_tokens == ref.n_tokens
    assert abs(half.l0 - ref.l0) < 0.1 * max(1.0, ref.l0)


@pytest.mark.slow
def test_gpu_throughput_benchmark_runs_on_the_cpu_at_a_tiny_size():
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "gpu_throughput.py"
    out = subprocess.run([sys.executable, str(script), "--device", "cpu", "--tiny"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "node tables" in out.stdout and "dataset build" in out.stdout and "tokens/s" in out.stdout
