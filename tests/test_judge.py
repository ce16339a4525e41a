"""The judge scorer: verdict parsing, the MT-Bench prompt, medians of samples, caching, and a real offline judge."""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from admap.commands.map import MapConfig
from admap.config import build
from admap.generate.base import Completion
from admap.generate.transformers_generator import TransformersGenerator
from admap.score.judge import VERDICT_COLUMNS, JudgeScorer, parse_rating
from admap.score.judge_prompt import DEFAULT_JUDGE_PROMPT, load_judge_prompt

EVALUATION_SETS = Path(__file__).resolve().parents[1] / "admap" / "evaluation_sets"
MT_BENCH_PROMPTS = EVALUATION_SETS / "mt_bench" / "judge_prompts.jsonl"
NAN = math.nan

FASTCHAT_VERDICT = (
    "The assistant's answer is accurate and relevant. It correctly identifies Canberra as the capital of "
    "Australia and explains that it was chosen as a compromise between Sydney and Melbourne in 1908. The "
    "response is concise, but it could have mentioned the Walter Burley Griffin design competition.\n\n"
    "Rating: [[8]]"
)
GPT4_MARKDOWN = (
    "### Evaluation\n\n**Helpfulness:** The response answers the question directly (2 of 3 parts).\n"
    "**Accuracy:** One date is wrong: the treaty was signed in 1648, not 1658.\n"
    "**Depth:** Adequate.\n\n**Rating:** 6/10"
)
QUOTED_FORMAT_TWICE = (
    'I must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: '
    '"Rating: [[5]]".\n\nThe answer gives a correct recipe with 4 steps, but omits the baking temperature.\n\n'
    "Rating: [[7]]"
)
EXAMPLE_ECHO_ONLY = (
    "After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following "
    'this format: "[[rating]]", for example: "Rating: [[5]]".'
)

VERDICTS = [
    # FastChat's own format, as GPT-4 writes it.
    (FASTCHAT_VERDICT, 8.0),
    ("Rating: [[8]]", 8.0),
    ("[[7]]", 7.0),
    ("The response is helpful but shallow. Rating: [[6.5]]", 6.5),
    ("Rating: [[ 9 ]]", 9.0),
    ("Rating: [[10]]", 10.0),
    ("Rating: [[1]]", 1.0),
    ("Rating: [[8.0]]", 8.0),
    ("Rating: [[**4**]]", 4.0),
    ("**Rating: [[3]]**", 3.0),
    ("Rating: [[7/10]]", 7.0),
    ("Rating: [[5]", 5.0),  # one closing bracket lost
    ("The answer is thorough.\nRating: [[9]].\n", 9.0),
    (QUOTED_FORMAT_TWICE, 7.0),
    ("Rating: [[4]]\n\nOn reflection, the code has a bug. Rating: [[3]]", 3.0),  # the last verdict counts
    # Common variants.
    (GPT4_MARKDOWN, 6.0),
    ("**Rating:** 7/10", 7.0),
    ("Rating: 7", 7.0),
    ("Score: 8 out of 10", 8.0),
    ("Overall, a solid answer. 7/10", 7.0),
    ("Given the factual errors, I would give it a rating of 6.", 6.0),
    ("I would rate this response a 4.", 4.0),
    ("I'd rate it 8/10 for clarity.", 8.0),
    ("Rating: [7]", 7.0),
    ("The response is polite and correct. [7]", 7.0),
    ("Final verdict: 5", 5.0),
    ("### Rating\n**9/10**", 9.0),
    ("Helpfulness: 8/10\nAccuracy: 6/10\n\n**Overall score:** 7.5/10", 7.5),
    ("Rating: 7.5", 7.5),
    ("8", 8.0),
    # Malformed, refused, or no verdict: missing (NaN), never 0.
    ("", NAN),
    ("   \n", NAN),
    (None, NAN),
    ("[[A]]", NAN),
    ("My final verdict is [[B]].", NAN),
    ("Rating: [[rating]]", NAN),
    ("Rating: [[", NAN),  # cut off by max_new_tokens
    ("The answer is mostly correct. Rating: [[1", NAN),  # cut off: could have been [[10]]
    ("The answer is 42.", NAN),
    ("The assistant lists 3 causes and 2 effects, citing a 1998 study of 400 people.", NAN),
    ("See reference [2] for the full derivation, which the assistant skips.", NAN),
    ("The assistant gave 3 examples.", NAN),
    ("Rating: [[0]]", NAN),
    ("Rating: [[11]]", NAN),
    ("Rating: [[-3]]", NAN),
    ("Rating: -2", NAN),
    ("Score: 85/100", NAN),  # another scale
    ("Rating: 4/5", NAN),
    ("Rating: 7-8", NAN),  # a hedge
    ("Rating: 7 or 8", NAN),
    ("I would rate it on a scale of 1 to 10.", NAN),
    ("Rating: N/A", NAN),
    ("I'm sorry, but I cannot evaluate this response.", NAN),
    (EXAMPLE_ECHO_ONLY, NAN),  # the prompt's example echoed back is no verdict
    ("The meeting on 1/10/2024 is mentioned correctly.", NAN),  # a date, not 1/10
]


@pytest.mark.parametrize(("verdict", "expected"), VERDICTS)
def test_parse_rating(verdict, expected):
    got = parse_rating(verdict)
    if math.isnan(expected):
        assert math.isnan(got), f"{verdict!r} should be unparsable, got {got}"
    else:
        assert got == expected


def test_parse_rating_corpus_is_large_and_refuses_zero():
    assert len(VERDICTS) >= 30
    assert all(parse_rating(v) != 0 for v, _ in VERDICTS)
    assert parse_rating("Rating: [[3]]", low=4, high=5) != parse_rating("Rating: [[3]]")


# --- the prompt ---


def test_shipped_prompt_is_fastchat_single_v1():
    entry = next(json.loads(line) for line in MT_BENCH_PROMPTS.read_text().splitlines() if '"single-v1"' in line)
    assert DEFAULT_JUDGE_PROMPT.system_prompt == entry["system_prompt"]
    assert DEFAULT_JUDGE_PROMPT.template == entry["prompt_template"]
    from_file = load_judge_prompt(MT_BENCH_PROMPTS)
    assert (from_file.system_prompt, from_file.template) == (entry["system_prompt"], entry["prompt_template"])


def test_judge_prompts_file_overrides_and_is_checked(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"name": "pair-v2", "prompt_template": "{question} {answer_a}"})
        + "\n"
        + json.dumps({"name": "single-v1", "system_prompt": "Be strict.", "prompt_template": "Q={question} A={answer}"})
        + "\n"
    )
    prompt = load_judge_prompt(path)
    assert prompt.messages("What {is} 2+2?", "4 {answer}") == [
        {"role": "system", "content": "Be strict."},
        {"role": "user", "content": "Q=What {is} 2+2? A=4 {answer}"},
    ]
    with pytest.raises(ValueError, match="no judge prompt named 'single-v2'"):
        load_judge_prompt(path, "single-v2")
    path.write_text(json.dumps({"name": "single-v1", "prompt_template": "only {question}"}) + "\n")
    with pytest.raises(ValueError, match=r"no \{answer\}"):
        load_judge_prompt(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_judge_prompt(tmp_path / "missing.jsonl")


# --- the scorer, with a scripted judge ---

ANSWER_START = "[The Start of Assistant's Answer]\n"
ANSWER_END = "\n[The End of Assistant's Answer]"


@dataclass
class ScriptedJudge:
    """A Generator whose verdict on an answer is scripted per sample; sample k runs with seed ``seed + k``.

    ``None`` in a script is a failed request. Every request it serves is recorded in ``calls``.
    """

    script: dict[str, list[str | None]]
    temperature: float = 0.0
    seed: int | None = None
    name: str = "scripted"
    model: str = "scripted-judge"
    calls: list = field(default_factory=list)

    def __post_init__(self):
        self.first_seed = self.seed

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def identity(self) -> dict:
        return {"generator": self.name, "model": self.model, "temperature": self.temperature, "seed": self.seed}

    def generate(self, conversations, *, on_result=None):
        sample = (self.seed or 0) - (self.first_seed or 0)
        results = []
        for index, messages in enumerate(conversations):
            self.calls.append(messages)
            user = messages[-1]["content"]
            answer = user[user.index(ANSWER_START) + len(ANSWER_START) : user.index(ANSWER_END)]
            verdicts = self.script[answer]
            text = verdicts[sample % len(verdicts)]
            completion = Completion(text=text, tokens_in=10, tokens_out=5, error=None if text else "scripted failure")
            results.append(completion)
            if on_result is not None:
                on_result(index, completion)
        return results


def tables(answers, instruction="What is the capital of Australia?"):
    instructions = pd.DataFrame({"instruction_id": ["q1"], "instruction": [instruction]})
    responses = pd.DataFrame(
        {
            "instruction_id": ["q1"] * len(answers),
            "response_id": [f"r{i}" for i in range(len(answers))],
            "response": answers,
        }
    )
    return instructions, responses


def test_median_of_parsed_samples_and_nan_never_zero(tmp_path):
    script = {
        "Canberra.": ["Rating: [[8]]", "Rating: 6", "Good. [[9]]"],  # median 8
        "Sydney.": ["[[2]]", "I cannot tell.", "Rating: [[4]]"],  # one unparsable: median of 2 and 4
        "Melbourne?": ["[[A]]", "Rating: [[", "The answer is 42."],  # none parse
        "Perth": [None, None, None],  # the judge failed
        "Canberra, since 1913.": ["Rating: [[0]]", "Rating: [[7]]", None],  # 0 is out of range
    }
    judge = ScriptedJudge(script, temperature=0.7, seed=1)
    scorer = JudgeScorer(judge, samples=3, cache_dir=str(tmp_path / "cache"))
    instructions, responses = tables(list(script))
    scores = scorer.score(instructions, responses)
    assert scores.dtype == np.float32 and scores.shape == (5,)
    np.testing.assert_array_equal(scores[[0, 1, 4]], [8.0, 3.0, 7.0])
    assert np.isnan(scores[2]) and np.isnan(scores[3])
    assert not (scores == 0).any()
    assert judge.seed == 1  # the per-sample seed is put back

    verdicts = scorer.verdicts
    assert list(verdicts.columns) == VERDICT_COLUMNS and len(verdicts) == 15
    sydney = verdicts[verdicts["response_id"] == "r1"].sort_values("sample")
    assert list(sydney["verdict"]) == script["Sydney."]
    np.testing.assert_array_equal(sydney["rating"], [2.0, np.nan, 4.0])
    assert verdicts.loc[verdicts["response_id"] == "r3", "error"].eq("scripted failure").all()
    assert scorer.generation_stats.requests == 15 and scorer.generation_stats.failed == 4


def test_unparsable_verdicts_are_logged(tmp_path, caplog):
    judge = ScriptedJudge({"A": ["Rating: [[5]]"], "B": ["no idea"]})
    scorer = JudgeScorer(judge, cache=False)
    with caplog.at_level("INFO", logger="admap.score.judge"):
        scores = scorer.score(*tables(["A", "B"]))
    np.testing.assert_array_equal(scores, [5.0, np.nan])
    assert "1 of 2 verdicts had no readable 1-10 rating" in caplog.text


def test_cached_verdicts_are_reused(tmp_path):
    script = {"Canberra.": ["Rating: [[9]]"], "Sydney.": ["Rating: [[2]]"], "Dunno": ["???"]}
    judge = ScriptedJudge(script)
    scorer = JudgeScorer(judge, cache_dir=str(tmp_path / "cache"))
    instructions, responses = tables(list(script))
    first = scorer.score(instructions, responses)
    assert len(judge.calls) == 3
    judge.calls.clear()
    second = scorer.score(instructions, responses)
    assert judge.calls == []  # every verdict from the cache (unparsable ones too: they are not failures)
    np.testing.assert_array_equal(first, second)
    assert scorer.generation_stats.cache_hits == 3
    # Without the cache, every call asks the judge again.
    uncached = JudgeScorer(judge, cache=False)
    uncached.score(instructions, responses)
    uncached.score(instructions, responses)
    assert len(judge.calls) == 6


def test_samples_are_cached_apart(tmp_path):
    """Seeded samples get their own cache entries: a rerun makes no calls and finds every sample again."""
    script = {"Canberra.": ["[[9]]", "[[7]]", "[[8]]", "[[1]]"]}
    judge = ScriptedJudge(script, temperature=1.0, seed=10)
    scorer = JudgeScorer(judge, samples=3, cache_dir=str(tmp_path))
    instructions, responses = tables(["Canberra."])
    np.testing.assert_array_equal(scorer.score(instructions, responses), [8.0])
    judge.calls.clear()
    np.testing.assert_array_equal(scorer.score(instructions, responses), [8.0])
    assert judge.calls == []
    assert sorted(scorer.verdicts["verdict"]) == ["[[7]]", "[[8]]", "[[9]]"]


def test_sampled_verdicts_without_a_seed_are_cached_only_under_a_scope(tmp_path):
    judge = ScriptedJudge({"A": ["[[4]]", "[[6]]"]}, temperature=1.0)
    instructions, responses = tables(["A"])
    scorer = JudgeScorer(judge, samples=2, cache_dir=str(tmp_path))
    scorer.score(instructions, responses)
    scorer.score(instructions, responses)
    assert len(judge.calls) == 4  # not deterministic, no scope: sampled afresh
    scoped = JudgeScorer(judge, samples=2, cache_dir=str(tmp_path), scope="runs/demo/judge")
    scoped.score(instructions, responses)
    scoped.score(instructions, responses)
    assert len(judge.calls) == 6


def test_duplicates_share_a_verdict_and_unknown_instructions_stay_unscored():
    judge = ScriptedJudge({"Same.": ["[[6]]"]})
    instructions, responses = tables(["Same.", "Same."])
    responses.loc[len(responses)] = ["q-missing", "r9", "Same."]
    scores = JudgeScorer(judge, cache=False).score(instructions, responses)
    np.testing.assert_array_equal(scores, [6.0, 6.0, np.nan])
    assert len(judge.calls) == 1


def test_multi_turn_dialogue_is_the_question():
    dialogue = "user: How do I pick a lock?\n\nassistant: Why do you ask?\n\nuser: I locked myself out."
    judge = ScriptedJudge({"Call a locksmith.": ["[[7]]"]})
    JudgeScorer(judge, cache=False).score(*tables(["Call a locksmith."], instruction=dialogue))
    (messages,) = judge.calls
    assert messages[0] == {"role": "system", "content": DEFAULT_JUDGE_PROMPT.system_prompt}
    assert f"[Question]\n{dialogue}\n\n[The Start of Assistant's Answer]\nCall a locksmith." in messages[1]["content"]


def test_samples_need_sampling():
    config = build(MapConfig, {"scorer": "judge", "judge": {"samples": 3}})  # greedy by default
    with pytest.raises(ValueError, match="--judge-temperature"):
        config.build_scorer(progress=False)
    with pytest.raises(ValueError, match="--judge-temperature"):
        JudgeScorer(ScriptedJudge({}, temperature=0.0, seed=3), samples=2)
    with pytest.raises(ValueError, match="judge_samples must be >= 1"):
        JudgeScorer(ScriptedJudge({}), samples=0)


def test_from_config_builds_the_judge_without_loading_it(tmp_path):
    generation = {"max_new_tokens": 96, "temperature": 0.7, "generation_seed": 5, "cache_dir": str(tmp_path)}
    config = build(MapConfig, {"scorer": "judge", "device": "cpu", "judge": {"generation": generation, "samples": 3}})
    scorer = config.build_scorer(progress=False)
    assert isinstance(scorer, JudgeScorer) and isinstance(scorer.generator, TransformersGenerator)
    assert (scorer.samples, scorer.cache_dir, scorer.generator.seed) == (3, str(tmp_path), 5)
    assert scorer.generator.max_new_tokens == 96 and scorer.generator._loaded is None
    assert not scorer.needs_proxy and scorer.label() == f"judge (transformers:{scorer.generator.model})"
    with pytest.raises(ValueError, match="--judge-generator"):
        build(MapConfig, {"scorer": "judge", "judge": {"generation": {"generator": "none"}}}).build_scorer()


# --- a real offline judge ---


@pytest.mark.slow
def test_smollm2_judge_on_demo_and_hh_rlhf(tmp_path, hh_rlhf_path):
    from admap.inputs import demo_dataset_path
    from admap.load import load_preferences

    generation = {"max_new_tokens": 96, "cache_dir": str(tmp_path)}
    config = build(MapConfig, {"scorer": "judge", "device": "cpu", "judge": {"generation": generation}})
    scorer = config.build_scorer(progress=False)
    demo = load_preferences(demo_dataset_path(), limit=2, progress=False)
    hh = load_preferences(str(hh_rlhf_path), skip_invalid=True, limit=3, progress=False)
    for label, data in (("demo", demo), ("hh_rlhf", hh)):
        responses = data.responses.head(6)
        start = time.perf_counter()
        scores = scorer.score(data.instructions, responses)
        seconds = time.perf_counter() - start
        assert scores.shape == (len(responses),)
        finite = scores[np.isfinite(scores)]
        assert ((finite >= 1) & (finite <= 10)).all()
        verdicts = scorer.verdicts
        assert len(verdicts) == len(responses) and verdicts["verdict"].notna().all()
        print(
            f"\n{label}: SmolLM2 judge parsed {len(finite)} of {len(responses)} verdicts in {seconds:.1f} s; "
            f"scores {scores.tolist()}; first verdict: {verdicts['verdict'].iloc[0][:120]!r}"
        )
