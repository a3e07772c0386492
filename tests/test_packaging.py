"""The built wheel installs our packages under mechscope.* only (never a top-level `datasets`,
`inference` or `autoencoders`, which would overwrite other distributions in site-packages)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_file_list(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("mechscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {n.split("/")[0] for n in names}
    assert top_levels == {"mechscope", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for package in ("inference", "autoencoders", "datasets", "activation_server"):
        assert f"mechscope/{package}/__init__.py" in names
    for subpackage in ("datasets/stores", "datasets/explanations"):  # subpackages too, not only the four roots
        assert f"mechscope/{subpackage}/__init__.py" in names
    assert "mechscope/inference/assets/gpt2_tokenizer/encoder.json" in names
    assert "mechscope/inference/assets/gpt2_tokenizer/vocab.bpe" in names
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mechscope = mechscope.activation_server.cli:main" in entry_points
