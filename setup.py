"""Package discovery for the wheel (everything else is in pyproject.toml).

Each top-level folder installs as ``mechscope.<folder>`` with all of its subpackages, found here
(setuptools' ``find_packages`` under each folder) so that a new subpackage can never be left out
of the wheel; the built neuron viewer ships as package data of ``mechscope.neuron_viewer``.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
FOLDERS = ("inference", "autoencoders", "datasets", "activation_server")


def mechscope_packages() -> dict[str, str]:
    """``mechscope.<folder>[.<sub>...]`` -> its directory, for every package under FOLDERS."""
    out = {}
    for folder in FOLDERS:
        out[f"mechscope.{folder}"] = folder
        for sub in find_packages(str(ROOT / folder)):
            out[f"mechscope.{folder}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    out["mechscope.neuron_viewer"] = "neuron_viewer"   # data only: the built viewer (dist/)
    return out


def viewer_files() -> list[str]:
    dist = ROOT / "neuron_viewer" / "dist"
    return sorted(p.relative_to(ROOT / "neuron_viewer").as_posix() for p in dist.rglob("*") if p.is_file())


PACKAGES = mechscope_packages()
setup(packages=list(PACKAGES), package_dir=PACKAGES,
      package_data={"mechscope.inference": ["assets/gpt2_tokenizer/*", "organism/*"],
                    "mechscope.autoencoders": ["organism/*", "organism/*/*"],
                    "mechscope.neuron_viewer": viewer_files()},
      include_package_data=False)
