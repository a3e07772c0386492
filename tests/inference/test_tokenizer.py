import hashlib

import pytest
import torch

from mechscope.inference import tokenizer as tokenizer_module
from mechscope.inference.errors import ChecksumError, EmptyPromptError, TokenOutOfRangeError, UnknownTokenError
from mechscope.inference.tokenizer import ENCODER_JSON_SHA256, VOCAB_BPE_SHA256, Tokenizer, gpt2_tokenizer


@pytest.fixture(scope="module")
def tok():
    return gpt2_tokenizer()


def test_known_encoding(tok):
    assert tok.encode("The capital of Texas is Austin") == [464, 3139, 286, 3936, 318, 9533]
    assert tok.vocab_size == 50257 and tok.eot_token_id == 50256


def test_packaged_files_match_tiktoken_pins():
    assert hashlib.sha256((tokenizer_module.TOKENIZER_DIR / "encoder.json").read_bytes()).hexdigest() == ENCODER_JSON_SHA256
    assert hashlib.sha256((tokenizer_module.TOKENIZER_DIR / "vocab.bpe").read_bytes()).hexdigest() == VOCAB_BPE_SHA256


def test_corrupt_file_is_rejected(tmp_path, monkeypatch):
    for name in ("encoder.json", "vocab.bpe"):
        (tmp_path / name).write_bytes((tokenizer_module.TOKENIZER_DIR / name).read_bytes())
    with open(tmp_path / "vocab.bpe", "ab") as f:
        f.write(b"x y\n")
    monkeypatch.setattr(tokenizer_module, "TOKENIZER_DIR", tmp_path)
    with pytest.raises(ChecksumError, match="vocab.bpe"):
        Tokenizer()


def test_every_display_string_round_trips(tok):
    shown = [tok.token_str(i) for i in range(tok.vocab_size)]
    assert len(set(shown)) == tok.vocab_size
    assert all(tok.token_id(s) == i for i, s in enumerate(shown))


def test_partial_utf8_tokens_display_their_bytes(tok):
    ids = tok.encode("日本語の文章")
    assert tok.decode(ids) == "日本語の文章"
    partial = [tok.token_str(i) for i in ids if "<0x" in tok.token_str(i)]
    assert partial, "expected at least one byte-level token that is not valid UTF-8 alone"
    for s in partial:
        assert tok.token_str(tok.token_id(s)) == s


def test_bad_inputs_name_the_problem(tok):
    with pytest.raises(EmptyPromptError, match="prompt 1 is empty"):
        tok.to_tokens(["hi", ""])
    with pytest.raises(UnknownTokenError, match="2 tokens"):
        tok.token_id(" Marylandia")
    with pytest.raises(TokenOutOfRangeError, match="50257"):
        tok.decode([1, 50257])


def test_padding_sides(tok):
    tokens, mask = tok.to_tokens(["a b c", "a"], padding_side="left")
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert tokens[1, -1].item() == tok.encode("a")[0]
    tokens, mask = tok.to_tokens(["a b c", "a"], prepend_bos=True)
    assert tokens[0, 0].item() == 50256 and mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert tokens.dtype == torch.long
