"""Imported once by the forkserver that starts the compute processes (see ``engine_processes``).

Each compute process is forked from that server, so what is imported and built here (torch, the
engine's modules, the GPT-2 tokenizer: ~190 MB of a process's memory, 146 MB of it torch's import
alone) is in memory once, shared copy-on-write by every compute process, instead of once in each.
"""

import torch  # noqa: F401

from mechscope.inference import gpt2_tokenizer

from ..engine import engine, loading  # noqa: F401
from . import shared_weights  # noqa: F401

gpt2_tokenizer().encode("warm up the tokenizer's tables")

import gc  # noqa: E402

gc.freeze()   # what is here stays out of the collector's sight, so forked processes do not copy its pages
