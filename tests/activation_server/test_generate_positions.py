"""Generation with an intervention at chosen prompt positions (GenerationIntervention.positions):
the first generated token equals the argmax of a plain forward pass with the same edit made by a raw
hook, and positions outside the prompt are a 422-style RequestError naming the field."""

import pytest
import torch

from mechscope.activation_server.engine.generation import generate
from mechscope.activation_server.server_schemas import GenerateRequest
from mechscope.activation_server.errors import RequestError
from mechscope.inference import gpt2_tokenizer

PROMPT = "When Mary and John went to the store, John gave a drink to"


def _steer(layer, index, scale, positions):
    return {"component": {"kind": "mlp_neuron", "layer": layer, "index": index}, "action": "steer",
            "scale": scale, "positions": positions}


@pytest.mark.parametrize("positions", [[3], [5, 9]])
def test_steering_at_chosen_positions_matches_a_raw_hook(engine, positions):
    model = engine.model
    ids = gpt2_tokenizer().encode(PROMPT, prepend_bos=True)

    def add(x, ctx):
        x = x.clone()
        x[:, positions, 7] += 40.0
        return x

    logits = model(torch.tensor([ids]), fwd_hooks={"blocks.1.mlp.hook_post": add})
    expected = int(logits[0, -1].argmax())
    result = generate(engine, GenerateRequest(prompts=[PROMPT], max_new_tokens=1,
                                              interventions=[_steer(1, 7, 40.0, positions)]))
    assert result.completions[0].token_ids == [expected]


def test_positions_beyond_the_prompt_are_refused():
    from mechscope.activation_server.engine.generation import _check_positions
    with pytest.raises(RequestError) as err:
        _check_positions(GenerateRequest(prompts=["a b"], interventions=[_steer(0, 0, 1.0, [0, 9])]))
    assert err.value.field == "interventions[0].positions"
