"""The answer stage runs each answering job in a child process: the parent never loads the answering model,
a child's error reaches the parent, and vLLM gets its memory share (through a stand-in `vllm` package)."""

import json
import multiprocessing
import os
import sys
from multiprocessing.context import SpawnProcess
from pathlib import Path

import pytest

from admap.generate import transformers_generator
from admap.generate.options import GeneratorOptions
from admap_experiments.evaluate.answer_process import AnswerJob, AnswerProcessError, answer_in_child
from admap_experiments.evaluate.answers import ERROR_MARKER, answer_file, read_answers
from admap_experiments.evaluate.data import Question

QUESTIONS = [Question(1, "writing", ("Name a colour.", "Name another one.")), Question(2, "roleplay", ("Hello?",))]

# A stand-in for vLLM, which needs a CUDA machine: each engine built appends its process id and arguments to a file.
FAKE_VLLM = """
import json
import os
from types import SimpleNamespace

RECORD = {record!r}


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LLM:
    def __init__(self, **kwargs):
        with open(RECORD, "a") as handle:
            handle.write(json.dumps({{"pid": os.getpid(), **kwargs}}) + "\\n")

    def chat(self, conversations, sampling_params, use_tqdm=True):
        reply = SimpleNamespace(text="A canned reply.", token_ids=[1, 2, 3])
        return [SimpleNamespace(outputs=[reply], prompt_token_ids=[1, 2]) for _ in conversations]
"""


@pytest.fixture
def started_children(monkeypatch) -> list[int]:
    """The process ids of the spawned children, as they start."""
    pids: list[int] = []
    start = SpawnProcess.start

    def recording_start(process):
        start(process)
        pids.append(process.pid)

    monkeypatch.setattr(SpawnProcess, "start", recording_start)
    return pids


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """The file the stand-in `vllm` writes; the package is on sys.path, which a spawned child takes over."""
    package = tmp_path / "site" / "vllm"
    package.mkdir(parents=True)
    record = tmp_path / "engines.jsonl"
    (package / "__init__.py").write_text(FAKE_VLLM.format(record=str(record)))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return record


@pytest.mark.slow
def test_the_answering_model_is_loaded_only_in_children(tmp_path, monkeypatch, mt_bench_dir, started_children):
    from admap.config import build
    from admap_experiments.config import ExperimentConfig
    from admap_experiments.evaluate.stages import evaluate_policy, reference_answers
    from admap_experiments.train import policy_checkpoint

    def load_in_parent(*args, **kwargs):
        raise AssertionError("the parent process loaded the answering model")

    # Patched here only: a spawned child imports the real loader afresh.
    monkeypatch.setattr(transformers_generator, "load_causal_lm", load_in_parent)
    config = build(
        ExperimentConfig,
        {
            "out": str(tmp_path / "experiments"),
            "evaluation": {
                "mt_bench": str(mt_bench_dir),
                "mt_bench_questions": 1,
                "mt_bench_mode": "pairwise",
                "answer": {"max_new_tokens": 4, "system_prompt": ""},
            },
        },
    )
    checkpoint = policy_checkpoint("smollm2")
    # The untrained policy's answers, then the (here: same) policy's: two engines back to back, as a run has them.
    reference = reference_answers(config, checkpoint, tmp_path / "reference", progress=False)
    evaluate_policy(config, Path(checkpoint), tmp_path / "eval", reference=reference, stages=["answer"], progress=False)

    assert len(started_children) == 2 and os.getpid() not in started_children
    assert multiprocessing.active_children() == []
    (base,) = reference["mt_bench"]
    (policy,) = read_answers(answer_file(tmp_path / "eval" / "mt_bench", "policy"))
    for record in (base, policy):
        turns = record["choices"][0]["turns"]
        assert len(turns) == 2 and ERROR_MARKER not in turns and record["generation"]["model"] == checkpoint

    # A rerun reads the complete answer files and starts no child.
    evaluate_policy(config, Path(checkpoint), tmp_path / "eval", reference=reference, stages=["answer"], progress=False)
    assert len(started_children) == 2


def test_a_child_error_is_raised_in_the_parent(tmp_path):
    missing = tmp_path / "no-such-model"
    job = AnswerJob(
        generation=GeneratorOptions(generator_model=str(missing)),
        model_id="policy",
        questions={"mt_bench": QUESTIONS},
        out_dir=tmp_path / "eval",
        progress=False,
    )
    with pytest.raises(AnswerProcessError, match="exit code 1") as raised:
        answer_in_child(job)
    message = str(raised.value)
    assert "Traceback" in message and "no-such-model" in message and "'policy'" in message
    assert not answer_file(tmp_path / "eval" / "mt_bench", "policy").exists()


def test_vllm_gets_its_memory_share_in_a_child(tmp_path, fake_vllm, started_children):
    job = AnswerJob(
        # A trained policy's answers are not cached (the experiments' answer options say so): the engine must start.
        generation=GeneratorOptions(
            generator="vllm", generator_model="org/policy", gpu_memory_utilization=0.55, cache=False
        ),
        model_id="policy",
        questions={"mt_bench": QUESTIONS},
        out_dir=tmp_path / "eval",
        progress=False,
    )
    answers = answer_in_child(job)

    assert [r["choices"][0]["turns"] for r in answers["mt_bench"]] == [["A canned reply."] * 2, ["A canned reply."]]
    (engine,) = [json.loads(line) for line in fake_vllm.read_text().splitlines()]
    assert engine["gpu_memory_utilization"] == 0.55 and engine["model"] == "org/policy"
    assert engine["pid"] == started_children[0] != os.getpid()
    assert "vllm" not in sys.modules

    # Complete answer files are read again, with no child and no engine.
    assert answer_in_child(job) == answers
    assert len(started_children) == 1 and len(fake_vllm.read_text().splitlines()) == 1


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_gpu_memory_utilization_is_a_share(share):
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        GeneratorOptions(generator="vllm", generator_model="org/policy", gpu_memory_utilization=share)
