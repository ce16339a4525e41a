import numpy as np
import pandas as pd
import pytest

from admap.embed import encode_unique
from admap.score import SCORERS, ReferenceScorer, paired_inner_products, reference_scores


def test_paired_inner_products_match_rowwise_dot():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    database = rng.normal(size=(30, 16)).astype(np.float32)
    which = rng.integers(0, 30, size=200)
    got, index = paired_inner_products(queries, database, which)
    expected = np.einsum("ij,ij->i", queries.astype(np.float64), database[which].astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    again, _ = paired_inner_products(queries, database, which, index=index)
    np.testing.assert_array_equal(got, again)
    with pytest.raises(ValueError, match="outside"):
        paired_inner_products(queries, database, np.full(200, 30))


def test_registry_rejects_duplicates_and_suggests_names():
    with pytest.raises(ValueError, match="already registered"):
        SCORERS.register("reference")(ReferenceScorer)
    with pytest.raises(KeyError, match="did you mean 'reference'"):
        SCORERS.get("referense")


@pytest.mark.slow
def test_reference_scores_equal_a_per_pair_computation(minilm, hh_rlhf_path):
    from admap.load import load_preferences

    data = load_preferences(str(hh_rlhf_path), skip_invalid=True, limit=60, progress=False)
    instructions = data.instructions.copy()
    # A stand-in proxy per instruction: its last user turn (real text, one per instruction).
    instructions["proxy_response"] = [
        __import__("json").loads(m)[-1]["content"] for m in instructions["prompt_messages"]
    ]
    responses = data.responses
    proxy_of = instructions.set_index("instruction_id")["proxy_response"]
    expected = []
    for instruction_id, response in zip(responses["instruction_id"], responses["response"]):
        pair = minilm.encode([proxy_of[instruction_id], response], convert_to_numpy=True).astype(np.float64)
        expected.append(pair[0] @ pair[1] / np.linalg.norm(pair[0]) / np.linalg.norm(pair[1]))

    scorer = ReferenceScorer(device="cpu", progress=False)
    scorer_scores = scorer.score(instructions, responses)
    np.testing.assert_allclose(scorer_scores, expected, atol=1e-5)

    texts = list(responses["response"]) + list(instructions["proxy_response"])
    unique, index = encode_unique(minilm, texts, progress=False)
    assert len(unique) == len(set(texts))
    n = len(responses)
    proxy_position = pd.Series(range(len(instructions)), index=instructions["instruction_id"])
    direct = reference_scores(
        unique[index[:n]], unique[index[n:]], proxy_position[responses["instruction_id"]].to_numpy()
    )
    np.testing.assert_allclose(direct, scorer_scores, atol=1e-6)


@pytest.mark.slow
def test_responses_without_a_proxy_stay_unscored():
    instructions = pd.DataFrame({"instruction_id": ["a", "b"], "proxy_response": ["Paris is the capital.", None]})
    responses = pd.DataFrame(
        {
            "instruction_id": ["a", "a", "b"],
            "response": ["The capital is Paris.", "I like turtles.", "Anything"],
        }
    )
    scores = ReferenceScorer(device="cpu", progress=False).score(instructions, responses)
    assert np.isnan(scores[2]) and scores[0] > scores[1]
