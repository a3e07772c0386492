"""mechscope.autoencoders: sparse autoencoders (SAEs) and their public formats.

Shipped with the model organism: :func:`load_organism_saes`. Quality: :func:`evaluate_sae`
(training: :mod:`.training`). Load: :func:`load_sae` (``openai:gpt2-small/resid_delta_mlp_v5_32k/3``,
``saelens:<owner>/<repo>/<folder>``, or a local path); save: :func:`save_sae`; check against a
model: :func:`check_compatible`.
"""

from .compat import check_compatible
from .config import ACTIVATIONS, INPUT_NORMALIZATIONS, SAEConfig, WeightProcessing
from .errors import SAEFormatError, SAEIncompatibleError
from .evaluation import SAEMetrics, evaluate_sae, format_metrics_table
from .fetch import cache_root, fetch_openai_sae, fetch_saelens_sae
from .hook_points import OPENAI_LOCATIONS, parse_hook_point
from .load import detect_format, load_sae, save_sae
from .native_format import load_native_sae, save_native_sae
from .openai_format import load_openai_sae, save_openai_sae
from .organism_saes import load_organism_saes
from .sae import InputNorm, SAEOutput, SparseAutoencoder
from .saelens_format import load_saelens_sae, save_saelens_sae
from .splice import SAE_HOOK_SUFFIXES, SAESplice
from .specs import LocalSAESpec, OpenAISAESpec, SAELensHubSpec, parse_sae_spec

__all__ = [
    "ACTIVATIONS",
    "INPUT_NORMALIZATIONS",
    "OPENAI_LOCATIONS",
    "InputNorm",
    "LocalSAESpec",
    "OpenAISAESpec",
    "SAEConfig",
    "SAEFormatError",
    "SAEIncompatibleError",
    "SAEMetrics",
    "SAELensHubSpec",
    "SAEOutput",
    "SAESplice",
    "SAE_HOOK_SUFFIXES",
    "SparseAutoencoder",
    "WeightProcessing",
    "cache_root",
    "check_compatible",
    "detect_format",
    "evaluate_sae",
    "fetch_openai_sae",
    "fetch_saelens_sae",
    "format_metrics_table",
    "load_native_sae",
    "load_openai_sae",
    "load_organism_saes",
    "load_saelens_sae",
    "load_sae",
    "parse_hook_point",
    "parse_sae_spec",
    "save_native_sae",
    "save_openai_sae",
    "save_saelens_sae",
    "save_sae",
]
