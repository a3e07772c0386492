"""``mechscope serve`` end to end: a subprocess on a random small checkpoint, bench script smoke."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mechscope.activation_server.client import ApiError, Client
from tests.support.live_server import ServeProcess

ROOT = Path(__file__).resolve().parents[2]


def test_mechscope_serve_subprocess(small_checkpoint, tmp_path):
    directory = small_checkpoint[1]
    with ServeProcess(["--model", str(directory), "--workers", "1", "--max-prompts", "3", "--compute-processes", "2",
                       "--viewer-dir", str(tmp_path / "no_viewer")],
                      env={"MECHSCOPE_AUTH_TOKEN": "tok-7f3a9", "MECHSCOPE_ALLOWED_ORIGINS": "https://lab.example.org"}
                      ) as server:
        ready = server.wait_ready()
        assert ready.status_code == 200, server.output()
        with Client(server.url, token="tok-7f3a9") as client:
            info = client.info()
            assert info.model.n_layer == 3 and info.saes == [] and info.datasets == []
            assert info.limits.max_prompts == 3 and info.auth_required
        try:
            Client(server.url).info()
            raise AssertionError("expected 401")
        except ApiError as e:
            assert e.status == 401
        r = httpx.get(server.url + "/healthz", headers={"Origin": "https://lab.example.org"})
        assert r.headers["access-control-allow-origin"] == "https://lab.example.org"
        # the benchmark script runs against it (tiny run: a smoke test, not a measurement)
        bench = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "server.py"), "--url", server.url,
                                "--token", "tok-7f3a9", "--requests", "2", "--concurrency", "1", "2", "--warmup", "0"],
                               capture_output=True, text=True, timeout=120)
        assert bench.returncode == 0, bench.stderr
        lines = bench.stdout.strip().splitlines()
        assert "p50 ms" in bench.stdout and len(lines) == 6 and lines[-1].startswith("p99(2 clients) / p50(1 client) = ")
        assert lines[-2].startswith("each round's p99(2) / p50(1): ")        # 2 requests: 2 rounds of 1
        for level in lines[2:4]:                     # clients, ok, 503, errors: every request answered
            assert level.split()[1:4] == ["2", "0", "0"], level
    assert "ready" in server.output() and "tok-7f3a9" not in server.output()
    assert "2 compute processes ready" in server.output()


def test_parallel_clients_of_the_compute_processes_get_the_serial_results(small_checkpoint, tmp_path):
    # The server's default path: attribution calls split over worker processes. Eight different
    # ablations sent at once (sharing passes, split in chunks) and one by one answer the same; a bad
    # request among them gets its 422 naming the field, from inside a worker.
    from tests.activation_server.test_http_concurrency import _in_parallel
    from tests.support.attribution_compare import assert_same_attribution

    def body(i: int) -> dict:
        node = {"kind": ["mlp_neuron", "attn_head"][i % 2], "layer": i % 3, "index": (5 * i) % 4 if i % 2 else 9 * i,
                "position": -1}
        return {"prompts": [{"text": "When Mary and John went to the store, John gave a drink to",
                             "interventions": [{"node": node, "mode": "zero"}]},
                            {"text": "When Mary and John went to the store, Mary gave a drink to"}],
                "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": 3 + i}

    bodies = [body(i) for i in range(8)]
    bodies[5] = {**bodies[5], "loss": {"targets": [" Mary Ann"], "distractors": [" John"]}}
    with ServeProcess(["--model", str(small_checkpoint[1]), "--compute-processes", "2",
                       "--cache-size", "0", "--viewer-dir", str(tmp_path / "no_viewer")]) as server:
        assert server.wait_ready().status_code == 200, server.output()
        with Client(server.url) as client:
            serial = [client.attribute(b) if i != 5 else None for i, b in enumerate(bodies)]
            parallel = _in_parallel(bodies, lambda b: httpx.post(server.url + "/api/v1/attribution", json=b, timeout=120))
            for i, r in enumerate(parallel):
                if i == 5:
                    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "loss", "targets"]
                    continue
                assert r.status_code == 200, r.text
                assert_same_attribution(type(serial[i]).model_validate(r.json()), serial[i])
    assert "2 compute processes ready" in server.output()


def test_mechscope_serve_with_several_processes(small_checkpoint, tmp_path):
    # Each process loads its own engine and logs 'ready' with its pid; requests are answered by
    # whichever process accepted the connection, all with the same results.
    directory = small_checkpoint[1]
    with ServeProcess(["--model", str(directory), "--processes", "2", "--workers", "1",
                       "--viewer-dir", str(tmp_path / "no_viewer")]) as server:
        deadline = time.monotonic() + 90
        while len(ready := set(re.findall(r" INFO (\d+) mechscope\.server: ready", server.output()))) < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        loaded = re.findall(r" INFO (\d+) mechscope\.server: torch threads per worker: \d+ \(1 workers × 2 processes\)",
                            server.output())
        assert set(loaded) == ready
        body = {"prompts": [{"text": "When Mary and John went to the store, John gave a drink to"}],
                "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": 3}
        answers = []
        for _ in range(6):   # new connections: the processes share the listening socket
            r = httpx.post(server.url + "/api/v1/attribution", json=body, timeout=60)
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert all(a["prompts"][0]["loss"] == answers[0]["prompts"][0]["loss"] for a in answers)
        assert all([n["key"] for n in a["nodes"]] == [n["key"] for n in answers[0]["nodes"]] for a in answers)


def test_mechscope_serve_rejects_zero_processes(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mechscope.activation_server.cli", "serve", "--processes", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "--processes must be >= 1, got 0" in run.stderr


def test_serve_flags_and_environment_reach_the_server_config():
    from mechscope.activation_server.cli import build_parser, main
    from mechscope.activation_server.cli.serve import add_serve_subcommand, config_from_args
    args = build_parser().parse_args(["serve", "--compute-processes", "3", "--gather-ms", "4.5", "--batch-prompts", "8"])
    config = config_from_args(args)
    assert (config.compute_processes, config.gather_ms, config.batch_prompts) == (3, 4.5, 8)
    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_serve_subcommand(sub, env={"MECHSCOPE_COMPUTE_PROCESSES": "0", "MECHSCOPE_GATHER_MS": "0"})
    config = config_from_args(parser.parse_args([]))
    assert (config.compute_processes, config.gather_ms) == (0, 0.0)
    assert main(["serve", "--compute-processes", "-1"]) == 2      # a clear error, no traceback


def test_serve_rejects_a_negative_flag_with_its_name(capsys):
    from mechscope.activation_server.cli import main
    assert main(["serve", "--gather-ms", "-3"]) == 2
    assert "gather_ms must be >= 0, got -3.0" in capsys.readouterr().err


def _direct_children(pid: int) -> list[tuple[int, bytes]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rpartition(")")[2].split()[1]) == pid:
                        with open(f"/proc/{entry}/cmdline", "rb") as c:
                            out.append((int(entry), c.read()))
            except OSError:
                continue
    return out


def _children(pid: int) -> list[int]:
    """The compute processes of server ``pid``: its children started by multiprocessing's spawn, or
    the children of its forkserver."""
    out = []
    for child, cmdline in _direct_children(pid):
        if b"spawn_main" in cmdline:
            out.append(child)
        elif b"forkserver" in cmdline:
            out += [grandchild for grandchild, _ in _direct_children(child)]
    return out


def test_a_killed_compute_process_gives_503_then_the_server_recovers(small_checkpoint, tmp_path):
    body = {"prompts": [{"text": "When Mary and John went to the store, John gave a drink to"}],
            "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": 3}
    with ServeProcess(["--model", str(small_checkpoint[1]), "--compute-processes", "2", "--cache-size", "0",
                       "--viewer-dir", str(tmp_path / "no_viewer")]) as server:
        assert server.wait_ready().status_code == 200, server.output()
        workers = _children(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(0.5)
        r = httpx.post(server.url + "/api/v1/attribution", json=body, timeout=60)
        assert r.status_code == 503 and r.headers["retry-after"] and "restart" in r.json()["detail"], r.text
        ready = httpx.get(server.url + "/readyz", timeout=5)    # new workers take seconds to import torch
        assert ready.status_code == 503 and "restarting" in ready.json()["detail"], ready.text
        assert server.wait_ready(timeout=90).status_code == 200, server.output()
        r = httpx.post(server.url + "/api/v1/attribution", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert workers[0] not in _children(server.process.pid)
    assert "a compute process exited unexpectedly" in server.output()
