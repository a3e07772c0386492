"""Write a small random-weight GPT-2 checkpoint (Hugging Face format) for the viewer's e2e test:
2 layers, 4 heads, d_model 64, context 64 — the real architecture and the real GPT-2 tokenizer,
fast enough that every request answers at once on a shared 2-core machine.

    python tests/e2e/make_tiny_checkpoint.py OUT_DIR
"""

import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main(out_dir: str) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64)).eval()
    model.save_pretrained(out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
