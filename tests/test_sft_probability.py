"""The SFT model's mean token probability of each response (``sft_probability``), with the offline SmolLM2:
batched equal to one at a time, equal to the authors' exp(-loss) with the prompt masked, empty responses 0."""

import json

import numpy as np
import pandas as pd
import pytest
from progress_bars import record_bars

from admap.cli import main
from admap.load import load_preferences
from admap.models import load_causal_lm
from admap.run_folder import MapRun
from admap.score.causal_lm import prompt_text
from admap.score.sft_probability import SftProbabilityScorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hh(hh_rlhf_path):
    data = load_preferences(str(hh_rlhf_path), limit=6, progress=False)
    responses = data.responses.copy()
    # One empty response, scored 0 as in the authors' code.
    responses.loc[responses.index[1], "response"] = ""
    return data.instructions, responses


def authors_probability(lm, tokenizer, messages, response):
    """compute_response_probability: prompt and response tokens concatenated, the prompt masked, exp(-loss)."""
    import torch

    prompt, add_special = prompt_text(messages, tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special, return_tensors="pt").input_ids
    response_ids = tokenizer(response, add_special_tokens=False, return_tensors="pt").input_ids
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    labels = input_ids.clone()
    labels[:, : prompt_ids.shape[1]] = -100
    with torch.no_grad():
        loss = lm(input_ids, labels=labels).loss
    return float(torch.exp(-loss))


def test_batched_equals_one_at_a_time_and_the_authors_computation(hh):
    instructions, responses = hh
    batched = SftProbabilityScorer(batch_size=4, device="cpu", progress=False).score(instructions, responses)
    single = SftProbabilityScorer(batch_size=1, device="cpu", progress=False).score(instructions, responses)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
    assert batched[1] == 0.0 and np.isfinite(batched).all()
    assert ((batched > 0) & (batched < 1)).sum() == len(responses) - 1

    lm, tokenizer = load_causal_lm("smollm2", device="cpu")
    prompts = instructions.set_index("instruction_id")["prompt_messages"]
    for position in (0, 2, 5):
        row = responses.iloc[position]
        expected = authors_probability(lm, tokenizer, json.loads(prompts[row["instruction_id"]]), row["response"])
        assert batched[position] == pytest.approx(expected, rel=1e-4)


def test_a_long_conversation_is_cut_on_the_left_and_keeps_the_response(hh, monkeypatch):
    instructions, responses = hh
    bars = record_bars(monkeypatch)
    short = SftProbabilityScorer(max_length=48, batch_size=2, device="cpu")
    scores = short.score(instructions, responses)
    # One bar over every response, advanced per batch.
    assert [(bar.total, bar.updates) for bar in bars] == [(len(responses), [2] * (len(responses) // 2))]
    assert np.isfinite(scores).all() and scores[1] == 0.0
    # With 48 tokens the response's own tokens are still scored (its start, after what of the prompt fits).
    lm, tokenizer = load_causal_lm("smollm2", device="cpu")
    response = responses.iloc[0]["response"]
    assert len(tokenizer(response, add_special_tokens=False)["input_ids"]) > 1
    assert 0 < scores[0] < 1


def test_admap_map_sft_probability_on_the_demo_set(tmp_path):
    out = tmp_path / "run"
    argv = ["map", "--scorer", "sft_probability", "--sft-probability-batch-size", "16", "--limit", "8"]
    assert main([*argv, "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    run = MapRun.open(out)
    scorer = run.summary["scorer"]
    assert scorer["label"] == "sft_probability (SmolLM2-135M-Instruct)" and scorer["responses_scored"] == 32
    assert run.summary["config"]["sft_probability"] == {
        "model": "SmolLM2-135M-Instruct",
        "batch_size": 16,
        "max_length": 2048,
    }
    scores = run.scores()["alignment_score"]
    assert ((scores > 0) & (scores < 1)).all()
    assert pd.Series(run.summary["regions"]).sum() == 8
