"""Resident memory of `mechscope serve` with compute processes: weights shared (memory-mapped
files, the default) or each process loading its own copy (MECHSCOPE_SHARED_WEIGHTS=0), against the
server alone (--compute-processes 0).

Memory is PSS (proportional set size, from /proc/PID/smaps_rollup) summed over the server and all
its descendants: a page shared by k processes counts 1/k in each, so shared weights count once.
The model is GPT-2-small-shaped with random weights, with four 32k-latent SAEs at the MLP outputs
of layers 0-3 (target: shared total <= 1.3 x the server alone). Each server answers a few node
tables with latents before it is measured (so every compute process has touched the weights).

    python scripts/bench/server_memory.py                 # run on an otherwise idle machine
    python scripts/bench/server_memory.py --tiny          # smoke test (small model and SAEs)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch


def write_checkpoint(directory: Path, tiny: bool, n_latents: int) -> tuple[Path, list[Path]]:
    from mechscope.autoencoders import SAEConfig, SparseAutoencoder, save_sae
    from mechscope.inference import GPT2, GPT2Config, save_pretrained
    cfg = (GPT2Config(n_layers=4, n_heads=4, d_model=64, n_ctx=64, name="tiny") if tiny
           else GPT2Config(n_layers=12, n_heads=12, d_model=768, n_ctx=1024, name="gpt2-small-shaped"))
    model = GPT2(cfg)
    model.init_weights(seed=0)
    save_pretrained(model, directory / "model")
    saes = []
    for layer in range(4):
        point = f"blocks.{layer}.hook_mlp_out"
        sae = SparseAutoencoder(SAEConfig(d_in=cfg.d_model, n_latents=n_latents, hook_point=point))
        g = torch.Generator().manual_seed(layer)
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(cfg.d_model, n_latents, generator=g) / cfg.d_model ** 0.5)
            sae.W_dec.copy_(torch.randn(n_latents, cfg.d_model, generator=g) / cfg.d_model ** 0.5)
            sae.b_enc.fill_(-0.3)
        save_sae(sae, directory / f"sae{layer}")
        saes.append(directory / f"sae{layer}")
    return directory / "model", saes


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def pss_mb(pid: int) -> tuple[float, int]:
    """(PSS of ``pid`` and its descendants in MB, number of processes)."""
    total, pids = 0.0, descendants(pid)
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total, len(pids)


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()
        return r.status


def measure(model: Path, saes: list[Path], processes: int, shared: bool) -> tuple[float, int, float]:
    """(PSS MB, processes, seconds per node table) of one server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mechscope.activation_server.cli", "serve", "--model", str(model),
           "--compute-processes", str(processes), "--port", str(port), "--log-level", "warning"]
    for sae in saes:
        cmd += ["--sae", str(sae)]
    env = {**os.environ, "MECHSCOPE_SHARED_WEIGHTS": "1" if shared else "0"}
    server = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3000):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server never became ready")
        body = {"prompts": [{"text": "When Mary and John went to the store, John gave a drink to"}], "mlp": "latents",
                "loss": {"targets": [" Mary"], "distractors": [" John"]}}
        start = time.perf_counter()
        clients = max(2, 2 * processes)
        with ThreadPoolExecutor(clients) as pool:   # concurrent: every compute process gets a share
            statuses = list(pool.map(lambda i: _post(base + "/api/v1/attribution",
                                                     {**body, "top_k": 10 + i}), range(clients)))
        latency = (time.perf_counter() - start) / clients
        assert statuses == [200] * clients, statuses
        time.sleep(1.0)
        mb, n = pss_mb(server.pid)
        return mb, n, latency
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a 4-layer d_model 64 model with 512-latent SAEs")
    p.add_argument("--processes", type=int, default=2, help="compute processes (default 2)")
    p.add_argument("--latents", type=int, default=32768)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        model, saes = write_checkpoint(Path(d), args.tiny, 512 if args.tiny else args.latents)
        alone, n0, t0 = measure(model, saes, 0, shared=True)
        print(f"server alone (--compute-processes 0): {alone:8.0f} MB PSS in {n0} processes; "
              f"{t0 * 1000:.0f} ms per node table with latents")
        for shared in (False, True):
            mb, n, t = measure(model, saes, args.processes, shared)
            what = "shared weights" if shared else "own copy each  "
            print(f"{args.processes} compute processes, {what}: {mb:8.0f} MB PSS in {n} processes "
                  f"= {mb / alone:.2f} x alone; {t * 1000:.0f} ms per node table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
