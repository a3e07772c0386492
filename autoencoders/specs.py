"""Names of SAEs: ``openai:...``, ``saelens:...`` or a local path, parsed into typed specs.

- ``openai:gpt2-small/resid_delta_mlp_v5_32k/3`` (also ``.../autoencoders/3.pt``): OpenAI's
  sparse_autoencoder release, blob ``gpt2-small/{location}{version}/autoencoders/{layer}.pt``.
- ``saelens:jbloom/GPT2-Small-SAEs-Reformatted/blocks.3.hook_resid_pre``: a SAELens directory in a
  Hugging Face hub repo (``owner/repo``, then the folder; ``owner/repo@revision/folder`` pins a revision).
- anything else: a local file or directory (``file:`` prefix optional).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mechscope.inference.errors import InvalidInputError

from .hook_points import openai_hook_point
from .openai_format import OPENAI_VERSION_LOCATIONS, OPENAI_VERSIONS

OPENAI_MODELS = {"gpt2-small": 12}
"""Models of OpenAI's release and their number of layers."""

SCHEMES = ("openai", "saelens", "file")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$")
_HF_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class OpenAISAESpec:
    model: str
    location: str
    version: str  # "" (v1), "_v4", "_v5_32k", "_v5_128k"
    layer: int

    @property
    def blob_name(self) -> str:
        return f"{self.model}/{self.location}{self.version}/autoencoders/{self.layer}.pt"

    @property
    def hook_point(self) -> str:
        return openai_hook_point(self.location, self.layer)

    def __str__(self) -> str:
        return f"openai:{self.model}/{self.location}{self.version}/{self.layer}"


@dataclass(frozen=True)
class SAELensHubSpec:
    repo_id: str
    folder: str  # "" for the repo root
    revision: str = "main"

    def __str__(self) -> str:
        rev = "" if self.revision == "main" else f"@{self.revision}"
        return f"saelens:{self.repo_id}{rev}" + (f"/{self.folder}" if self.folder else "")


@dataclass(frozen=True)
class LocalSAESpec:
    path: Path


SAESpec = OpenAISAESpec | SAELensHubSpec | LocalSAESpec


def _split_location_version(name: str) -> tuple[str, str]:
    for version in sorted(OPENAI_VERSIONS, key=len, reverse=True):
        if version and name.endswith(version):
            return name[: -len(version)], version
    return name, ""


def parse_openai_spec(body: str, spec: str) -> OpenAISAESpec:
    parts = body.strip("/").split("/")
    if len(parts) == 4 and parts[2] == "autoencoders" and parts[3].endswith(".pt"):
        parts = [parts[0], parts[1], parts[3][: -len(".pt")]]
    if len(parts) != 3:
        raise InvalidInputError(
            f"bad OpenAI SAE name {spec!r}: expected 'openai:<model>/<location><version>/<layer>', "
            "e.g. 'openai:gpt2-small/resid_delta_mlp_v5_32k/3'",
            field="spec",
        )
    model, name, layer_text = parts
    if model not in OPENAI_MODELS:
        raise InvalidInputError(f"unknown OpenAI SAE model {model!r} in {spec!r}; known: {sorted(OPENAI_MODELS)}", field="spec")
    location, version = _split_location_version(name)
    allowed = OPENAI_VERSION_LOCATIONS[version]
    if location not in allowed:
        vname = version.lstrip("_") or "v1"
        raise InvalidInputError(
            f"OpenAI SAE release {vname} has no location {location!r} (in {spec!r}); its locations: {list(allowed)}",
            field="spec",
        )
    if not layer_text.isdigit() or not 0 <= int(layer_text) < OPENAI_MODELS[model]:
        raise InvalidInputError(
            f"bad layer {layer_text!r} in {spec!r}: {model} has layers 0..{OPENAI_MODELS[model] - 1}", field="spec"
        )
    return OpenAISAESpec(model, location, version, int(layer_text))


def parse_saelens_spec(body: str, spec: str) -> SAELensHubSpec:
    parts = body.strip("/").split("/")
    if len(parts) < 2:
        raise InvalidInputError(
            f"bad SAELens SAE name {spec!r}: expected 'saelens:<owner>/<repo>[@revision]/<folder>'", field="spec"
        )
    owner, repo = parts[0], parts[1]
    revision = "main"
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if not revision:
            raise InvalidInputError(f"empty revision after '@' in {spec!r}", field="spec")
    for piece in (owner, repo):
        if not _HF_NAME_RE.match(piece):
            raise InvalidInputError(f"bad hub repo name {owner}/{repo!s} in {spec!r}", field="spec")
    folder_parts = parts[2:]
    if any(p in ("", ".", "..") for p in folder_parts):
        raise InvalidInputError(f"bad folder {'/'.join(folder_parts)!r} in {spec!r}", field="spec")
    return SAELensHubSpec(f"{owner}/{repo}", "/".join(folder_parts), revision)


def parse_sae_spec(spec: "str | Path | SAESpec") -> SAESpec:
    """Parse an SAE name (see module docstring). Raises InvalidInputError naming what is wrong."""
    if isinstance(spec, (OpenAISAESpec, SAELensHubSpec, LocalSAESpec)):
        return spec
    if isinstance(spec, Path):
        return LocalSAESpec(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"SAE name must be a non-empty string or a path, got {spec!r}", field="spec")
    match = _SCHEME_RE.match(spec)
    if match and not Path(spec).exists():
        scheme, body = match.group(1).lower(), match.group(2)
        if scheme == "openai":
            return parse_openai_spec(body, spec)
        if scheme == "saelens":
            return parse_saelens_spec(body, spec)
        if scheme == "file":
            return LocalSAESpec(Path(body))
        raise InvalidInputError(
            f"unknown SAE source {scheme!r} in {spec!r}; use 'openai:...', 'saelens:...' or a local path",
            field="spec",
        )
    return LocalSAESpec(Path(spec))
