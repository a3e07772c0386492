import torch

from mechscope.inference import SetActivation
from mechscope.inference.generation import pad_left


def test_batched_generation_equals_one_at_a_time(small_model):
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50257, (n,), generator=gen).tolist() for n in (7, 3, 5)]
    tokens, mask = pad_left(prompts)
    batched = small_model.generate(tokens, attention_mask=mask, max_new_tokens=12, stop_at_eot=False)
    for i, p in enumerate(prompts):
        alone = small_model.generate(torch.tensor([p]), max_new_tokens=12, stop_at_eot=False)
        assert batched.new_tokens[i] == alone.new_tokens[0]


def test_kv_cache_generation_equals_full_recompute(small_model):
    tokens = torch.randint(0, 50257, (1, 4), generator=torch.Generator().manual_seed(1))
    steer = [SetActivation("blocks.1.hook_resid_post", index=3, value=5.0)]
    out = small_model.generate(tokens, max_new_tokens=8, stop_at_eot=False, interventions=steer)
    seq = tokens
    for _ in range(8):  # no cache: rerun the whole sequence with the same intervention each step
        with torch.no_grad():
            nxt = small_model(seq, interventions=steer)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    assert out.tokens.tolist() == seq.tolist()
    plain = small_model.generate(tokens, max_new_tokens=8, stop_at_eot=False)
    assert plain.tokens.tolist() != out.tokens.tolist()


def test_sampling_is_seeded_and_top_p_limits_choices(small_model):
    tokens = torch.randint(0, 50257, (2, 4), generator=torch.Generator().manual_seed(2))
    a = small_model.generate(tokens, max_new_tokens=6, temperature=1.0, seed=7, stop_at_eot=False)
    b = small_model.generate(tokens, max_new_tokens=6, temperature=1.0, seed=7, stop_at_eot=False)
    assert a.tokens.tolist() == b.tokens.tolist()
    greedy = small_model.generate(tokens, max_new_tokens=6, stop_at_eot=False)
    tiny_p = small_model.generate(tokens, max_new_tokens=6, temperature=1.0, top_p=1e-6, seed=3, stop_at_eot=False)
    assert tiny_p.tokens.tolist() == greedy.tokens.tolist()
