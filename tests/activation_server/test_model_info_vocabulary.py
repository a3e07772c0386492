"""ModelInfo.known_token_ids: the tokens with an embedding of their own (the viewer warns about the
others). Checked on the shipped organism (most tokens share one embedding) against the weights
themselves, and on a random model (none shared: null)."""

import torch

from mechscope.activation_server.http.routes.metadata import model_info
from mechscope.inference import gpt2_tokenizer, load_model
from mechscope.inference.vocabulary import shared_unembedding_mask


def test_a_model_without_shared_embeddings_lists_no_vocabulary(small_model):
    assert model_info(small_model, shared_unembedding_mask(small_model)).known_token_ids is None
    assert model_info(small_model).known_token_ids is None


def test_the_organism_lists_exactly_the_tokens_with_their_own_embedding():
    model = load_model("organism")
    known = model_info(model, shared_unembedding_mask(model)).known_token_ids
    assert known is not None and known == sorted(known)
    w = model.W_U.detach().T                                    # [vocab, d_model]
    unknown = sorted(set(range(w.shape[0])) - set(known))
    # every unlisted token has the very same embedding; every listed one differs from it
    assert torch.equal(w[unknown], w[unknown[0]].expand(len(unknown), -1))
    assert not (w[known] == w[unknown[0]]).all(-1).any()
    assert 2_000 < len(known) < 5_000
    tok = gpt2_tokenizer()
    (mary,) = tok.encode(" Mary", prepend_bos=False)
    (volcano,) = tok.encode(" volcano", prepend_bos=False)
    assert mary in known and volcano not in known
