"""Search by explanation text: synonyms of the offline categories, whole words, what makes a node
fire ranked above what it writes, then by score; kind filter; best explanation per node."""

from mechscope.datasets.explanations import Explanation, NodeKey
from mechscope.datasets.explanations.search import ExplanationIndex


def e(text: str, score: float, explainer: str = "offline") -> Explanation:
    return Explanation(text=text, method="m", explainer=explainer, score=score)


INDEX = ExplanationIndex([
    (NodeKey("mlp_neuron", 0, 1), e('fires after " year"; fires on numbers', 0.5)),
    (NodeKey("mlp_neuron", 0, 2), e('fires on " the"; promotes " 17", " years"', 0.9)),
    (NodeKey("sae_latent", 1, 3, "blocks.1.hook_mlp_out"), e("fires on capitalised words", 0.8)),
    (NodeKey("attn_head", 1, 4), e("attends to the token after an earlier copy of itself", 0.4)),
    (NodeKey("attn_head", 1, 4), e("an induction head", 0.7, explainer="llm")),
    (NodeKey("sae_latent", 2, 5, "blocks.2.hook_mlp_out"), e("fires on capital cities", 0.3)),
])


def keys(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(h.node) for h in hits]


def test_years_finds_numbers_and_year_tokens_before_output_mentions():
    assert keys(INDEX.search("nodes about years")) == ["mlp_neuron:0:1", "mlp_neuron:0:2"]


def test_whole_words_only():
    assert keys(INDEX.search("capital")) == ["sae_latent:blocks.2.hook_mlp_out:5"]  # not "capitalised"
    assert keys(INDEX.search("cities")) == ["sae_latent:blocks.2.hook_mlp_out:5"]


def test_induction_kind_filter_and_best():
    hits = INDEX.search("induction", kind="attn_head")
    assert keys(hits) == ["attn_head:1:4"] and hits[0].explanation.explainer == "llm"  # the better-scored match
    assert INDEX.search("induction", kind="mlp_neuron") == []
    assert INDEX.best(NodeKey("attn_head", 1, 4)).explainer == "llm"
    assert INDEX.best(NodeKey("attn_head", 9, 9)) is None
