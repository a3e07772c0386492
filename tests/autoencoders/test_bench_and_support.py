"""The encode benchmark script runs (tiny sizes); the Azurite helper explains how to install Azurite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.azurite import AzuriteNotInstalled, find_azurite_binary

REPO = Path(__file__).resolve().parents[2]


def test_bench_script_runs_and_reports_ratios():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/bench/sae_encode.py"), "--n-latents", "1024", "--d-in", "64",
         "--k", "8", "--batch", "16", "--warmup", "1", "--repeats", "3"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    lines = [line for line in result.stdout.splitlines() if "ratio" in line]
    assert len(lines) == 2 and lines[0].startswith("relu") and lines[1].startswith("topk(k=8)")


def test_missing_azurite_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("AZURITE_BIN", str(tmp_path / "nope"))
    with pytest.raises(AzuriteNotInstalled, match=r"npm install --prefix \.venv/azurite azurite"):
        find_azurite_binary()
