"""experiments/evaluate with the offline SmolLM2-135M-Instruct: local answers over two turns, and the logprob judge."""

import logging
import math

import pytest

from admap.generate.transformers_generator import TransformersGenerator
from admap_experiments.evaluate import (
    ERROR_MARKER,
    SINGLE_VERDICTS,
    LogprobJudge,
    generate_answers,
    judgment_file,
    read_answers,
    read_judge_prompts,
    read_questions,
    read_reference_answers,
    run_mt_bench,
    select_questions,
)
from admap_experiments.evaluate.answer_judges import _continuation, score_continuations
from admap_experiments.evaluate.answers import answer_file
from admap_experiments.evaluate.mt_bench import single_conversation

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

# A writing question (single-v1 prompts) and a math one (single-math-v1, with the GPT-4 reference).
QUESTION_IDS = [81, 111]


@pytest.fixture(scope="module")
def mt_bench(mt_bench_dir):
    questions = select_questions(read_questions(mt_bench_dir), question_ids=QUESTION_IDS)
    return questions, read_reference_answers(mt_bench_dir), read_judge_prompts(mt_bench_dir)


@pytest.fixture(scope="module")
def answers(mt_bench, tmp_path_factory):
    generator = TransformersGenerator(max_new_tokens=24, device="cpu", progress=False)
    path = answer_file(tmp_path_factory.mktemp("answers"), "smollm2")
    return generate_answers(mt_bench[0], generator, model_id="smollm2", path=path), path


def test_local_model_answers_two_turns(mt_bench, answers):
    records, path = answers
    assert [r["question_id"] for r in records] == QUESTION_IDS
    for record in records:
        turns = record["choices"][0]["turns"]
        assert len(turns) == 2 and all(t.strip() and t != ERROR_MARKER for t in turns)
        assert record["turn_errors"] == [None, None] and record["generation"]["max_new_tokens"] == 24
    assert read_answers(path) == records


@pytest.fixture(scope="module")
def judge():
    return LogprobJudge(device="cpu", progress=False)


def test_logprob_judge_on_mt_bench(mt_bench, answers, judge, tmp_path):
    questions, references, prompts = mt_bench
    result = run_mt_bench(
        answers[0], questions=questions, references=references, prompts=prompts, judge=judge, out_dir=tmp_path
    )
    logger.info("logprob judge: %.2f s per judgment", judge.seconds_per_judgment)
    assert (result["mt_bench_judged"], result["mt_bench_unparsed"], result["mt_bench_answer_errors"]) == (4, 0, 0)
    assert 1 <= result["mt_bench_score"] <= 10 and 1 <= result["mt_bench_expected_score"] <= 10
    records = [r for r in judgment_file_records(tmp_path, judge.model)]
    assert len(records) == 4
    for record in records:
        assert record["verdict"] in SINGLE_VERDICTS and record["score"] == int(record["verdict"])
        assert record["judgment"] == f"Rating: [[{record['verdict']}]]"
        assert set(record["probabilities"]) == set(SINGLE_VERDICTS)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert max(record["probabilities"], key=record["probabilities"].get) == record["verdict"]
        assert 1.0 <= record["expected_score"] <= 10.0
    assert {r["judge"][1] for r in records} == {
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
    }


def judgment_file_records(out_dir, judge_model):
    import json

    path = judgment_file(out_dir, judge_model, "single")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kv_cache_scores_match_a_full_forward_pass(mt_bench, answers, judge):
    """A two-digit verdict ("10]]": three tokens) scored on the prompt's KV cache equals a plain forward pass."""
    import torch

    questions, references, prompts = mt_bench
    lm, tokenizer = judge._load()
    conversation = single_conversation(
        questions[1],
        answers[0][1]["choices"][0]["turns"],
        turn=1,
        prompt=prompts["single-math-v1"],
        references=references,
    )
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) + "Rating: [["
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    candidates = [_continuation(tokenizer, prompt, context, verdict + "]]") for verdict in ("1", "10", "7")]
    assert len(candidates[1]) == len(candidates[0]) + 1  # "10" is one token more than "1"
    cached = score_continuations(lm, context, candidates)
    with torch.inference_mode():
        for tokens, score in zip(candidates, cached):
            logits = lm(input_ids=torch.tensor([context + tokens])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            full = sum(float(logprobs[len(context) - 1 + i, t]) for i, t in enumerate(tokens))
            assert math.isclose(score, full, abs_tol=1e-3)
