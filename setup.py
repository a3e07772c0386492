"""Package discovery for setuptools (everything else is in pyproject.toml).

Each top-level folder installs as ``mechscope.<folder>`` (never as a top-level ``datasets`` or
``inference``, which would overwrite other distributions); every package below it — every folder
with an ``__init__.py`` — is found, not listed, so a new subpackage cannot be left out of the wheel.
"""

from setuptools import find_packages, setup

FOLDERS = ("inference", "autoencoders", "datasets", "activation_server")

setup(
    package_dir={f"mechscope.{folder}": folder for folder in FOLDERS},
    packages=[f"mechscope.{folder}" + (f".{sub}" if sub else "")
              for folder in FOLDERS for sub in ("", *find_packages(folder))],
)
