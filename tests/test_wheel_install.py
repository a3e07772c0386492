"""The wheel is the product: built, installed into a fresh virtual environment (no system site
packages, nothing from this checkout), ``mechscope serve`` from it serves the viewer at /, a node
page and /docs (Swagger UI and ReDoc with their assets) with no network at all (the server and
the checks run in a network namespace that has only a loopback interface)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"

CHECKS = textwrap.dedent('''
    import json, re, socket, subprocess, sys, time, urllib.request
    mechscope, datasets = sys.argv[1], sys.argv[2]
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([mechscope, "serve", "--port", str(port), "--datasets", datasets,
                               "--compute-processes", "0", "--log-level", "warning"])
    def get(path, accept="*/*"):
        with urllib.request.urlopen(urllib.request.Request(base + path, headers={"Accept": accept}), timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace")
    try:
        for _ in range(600):
            try:
                if get("/readyz")[0] == 200:
                    break
            except Exception:
                pass
            time.sleep(0.2)
        else:
            sys.exit("the server never became ready")
        status, index = get("/", "text/html")
        assert status == 200 and "not built" not in index and '<div id="root">' in index, index[:300]
        for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', index):
            assert get(asset)[0] == 200, asset
        status, page = get("/api/v1/nodes/mlp_neuron/0/0")
        assert status == 200 and json.loads(page)["index"] == 0, page[:300]
        for doc in ("/docs", "/redoc"):
            status, html = get(doc, "text/html")
            urls = re.findall(r'(?:src|href|url)\\s*[=:]\\s*[\\'"]([^\\'"]+)[\\'"]', html)
            assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], (doc, urls)
            for url in urls:
                assert get(url)[0] == 200, url
        assert "openapi" in get("/openapi.json")[1]
        print("WHEEL-OK")
    finally:
        server.terminate()
        server.wait(30)
''')


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_viewer_node_pages_and_docs_offline(tmp_path):
    if not (ROOT / "neuron_viewer" / "dist" / "index.html").is_file():
        pytest.fail("the viewer is not built: run `make viewer` first (make test does)")
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("needs `unshare -rn` (a network namespace) to run with no network")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
          str(ROOT)], timeout=600)
    wheel = next(tmp_path.glob("mechscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mechscope/datasets/stores/__init__.py" in names and "mechscope/neuron_viewer/dist/index.html" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)   # no --system-site-packages
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, TORCH], timeout=900)                               # the local wheel of the pinned CPU torch
    _run([*pip, str(wheel)], timeout=900)
    python, mechscope = venv / "bin" / "python", venv / "bin" / "mechscope"
    where = _run([str(python), "-c", "import mechscope.activation_server, sys; print(mechscope.activation_server.__file__)"],
                 cwd=tmp_path, timeout=120).stdout
    assert str(venv) in where and str(ROOT) not in where

    datasets = tmp_path / "datasets"
    _run([str(mechscope), "datasets", "ensure-organism", "--out", str(datasets), "--rows", "48", "--quiet"],
         cwd=tmp_path, timeout=900)
    checks = tmp_path / "checks.py"
    checks.write_text(CHECKS)
    result = _run(["unshare", "-rn", "sh", "-c", f"ip link set lo up 2>/dev/null; exec {python} {checks} "
                   f"{mechscope} {datasets / 'organism'}"], cwd=tmp_path, timeout=600)
    assert "WHEEL-OK" in result.stdout
