"""`mechscope datasets build --ray ADDRESS` on a real local Ray cluster (a head and 2 workers started
with `ray start` on 127.0.0.1): the dataset, written to Azure Blob Storage (Azurite) or a local
directory, equals the one-process build byte for byte, also when a worker process is killed
mid-shard (Ray restarts it and retries the shard) and when the driver itself is killed and started
again (it resumes from the shards already committed to the store)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")

from mechscope.datasets.node_dataset.builder import NodeDatasetBuilder  # noqa: E402
from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus  # noqa: E402
from mechscope.datasets.node_dataset.config import BuildConfig  # noqa: E402
from mechscope.datasets.stores import CONNECTION_STRING_ENV, AzureBlobStore, LocalBlobStore  # noqa: E402
from mechscope.inference import load_model  # noqa: E402
from tests.support.azurite import Azurite, module_azurite  # noqa: E402, F401 (the `azurite` fixture)

from .ray_cluster import LocalRayCluster  # noqa: E402

ROWS, N_CTX, BATCH = 96, 64, 4  # 24 batches of 256 tokens
MECHSCOPE = str(Path(sys.executable).with_name("mechscope"))
PREFIX = "organism"


@pytest.fixture(scope="module")
def cluster(azurite: Azurite):
    # every node's workers open azure:// stores with the connection string of their environment
    c = LocalRayCluster(workers=2, cpus=1, env={CONNECTION_STRING_ENV: azurite.connection_string})
    yield c
    c.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The one-process build, with torch on one thread like each 1-CPU worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = LocalBlobStore(tmp_path_factory.mktemp("reference"))
        corpus = TaskSuiteCorpus(seed=0, num_rows=ROWS, first_row=10_000_000, n_ctx=N_CTX)
        config = BuildConfig(batch_size=BATCH)
        NodeDatasetBuilder(load_model("organism", progress=False), corpus, store, PREFIX, config=config,
                           model_name="organism", progress=False).run()
        return blobs(store.root)
    finally:
        torch.set_num_threads(threads)


def blobs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / PREFIX).rglob("*")) if p.is_file()}


def build_argv(cluster: LocalRayCluster, out: Path | str, *extra: str) -> list[str]:
    return [MECHSCOPE, "datasets", "build", "--rows", str(ROWS), "--n-ctx", str(N_CTX), "--batch-size", str(BATCH),
            "--out", str(out), "--ray", cluster.address, "--workers", "2", *extra]


def run_build(cluster: LocalRayCluster, out: Path | str, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(build_argv(cluster, out, *extra), capture_output=True, text=True, env=cluster.env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def shards_line(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"built (\d+) of (\d+) shards on Ray \((\d+) resumed\)", stdout)
    assert m, stdout
    return int(m[1]), int(m[2]), int(m[3])


def test_a_build_on_the_cluster_into_azure_equals_the_one_process_build(cluster, reference, azurite):
    container = f"c{uuid.uuid4().hex[:16]}"
    store = AzureBlobStore.from_connection_string(azurite.connection_string, container)
    store.container_client.create_container()
    done = run_build(cluster, f"azure://{container}", "--shard-batches", "4")
    assert shards_line(done.stdout) == (6, 6, 0)
    assert "shard" in done.stderr and "tok/s" in done.stderr  # the progress bar over shards
    written = {key: store.read(key) for key in store.list(PREFIX + "/")}
    assert written == reference  # so no blob of _build/ (shards, plan, attempts) is left either


def test_a_worker_killed_mid_shard_is_retried_to_the_same_dataset(cluster, reference, tmp_path):
    attempts_dir = tmp_path / PREFIX / "_build" / "ray" / "attempts"
    driver = subprocess.Popen(build_argv(cluster, tmp_path, "--shard-batches", "8", "--quiet"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    seen: dict[str, int] = {}  # attempt file -> pid
    killed: tuple[int, int] | None = None  # (shard, pid)
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        for f in attempts_dir.glob("*.json") if attempts_dir.exists() else []:
            m = re.fullmatch(r"shard-(\d+)\.pid-(\d+)\.json", f.name)
            if m is None:
                continue  # the store's temporary file of a write in progress
            shard, pid = int(m[1]), int(m[2])
            seen[f.name] = pid
            if killed is None:  # the shard has just started (each takes seconds): kill its worker
                os.kill(pid, signal.SIGKILL)
                killed = (shard, pid)
        time.sleep(0.02)
    stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 0, stderr[-4000:]
    assert killed is not None
    retried = [name for name, pid in seen.items() if name.startswith(f"shard-{killed[0]:06d}.") and pid != killed[1]]
    assert retried, (killed, seen)  # the same shard ran again in another process
    assert blobs(tmp_path) == reference


@pytest.mark.slow
def test_a_restarted_driver_resumes_from_the_committed_shards(cluster, reference, tmp_path):
    ray_dir = tmp_path / PREFIX / "_build" / "ray"
    driver = subprocess.Popen(build_argv(cluster, tmp_path, "--shard-batches", "4", "--quiet"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cluster.env)
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        if len(list(ray_dir.glob("shard-*.json"))) >= 2:
            driver.send_signal(signal.SIGKILL)  # the driver dies: no manifest, its actors go with it
            break
        time.sleep(0.02)
    driver.communicate(timeout=60)
    assert driver.returncode == -signal.SIGKILL, "the build finished before the driver could be killed"
    assert not (tmp_path / PREFIX / "manifest.json").exists()
    committed = len(list(ray_dir.glob("shard-*.json")))

    done = run_build(cluster, tmp_path, "--shard-batches", "4", "--quiet")
    built, total, resumed = shards_line(done.stdout)
    assert resumed >= committed >= 2 and built + resumed == total == 6
    assert blobs(tmp_path) == reference
