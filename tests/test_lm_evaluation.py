"""The lm-eval capability check after DPO: options, task names, the results row and its reuse, the offline task
shipped with the experiments (reproducible from its script, loadable from any directory), and on the real
SmolLM2 a run whose accuracy is checked against log-likelihoods computed here with transformers."""

import json
import subprocess
import sys

import pytest

from admap.config import build
from admap_experiments.evaluate.lm_evaluation import SHIPPED_TASKS, LmEvalOptions, results_row, run_lm_eval

TASK = "admap_quantities"
DATA_FILE = SHIPPED_TASKS / f"{TASK}.jsonl"


def read_items() -> list[dict]:
    return [json.loads(line) for line in DATA_FILE.read_text(encoding="utf-8").splitlines()]


def test_the_make_script_reproduces_the_shipped_data_byte_for_byte(tmp_path):
    out = tmp_path / "items.jsonl"
    subprocess.run([sys.executable, str(SHIPPED_TASKS / f"make_{TASK}.py"), "--out", str(out)], check=True, timeout=60)
    assert out.read_bytes() == DATA_FILE.read_bytes()


def test_the_shipped_items_are_well_formed_four_choice_questions():
    items = read_items()
    assert len(items) == 100 and len({item["id"] for item in items}) == 100
    for item in items:
        assert len(set(item["choices"])) == 4 and 0 <= item["answer"] < 4
    # The first items (what a small `limit` evaluates) mix every kind.
    assert len({item["kind"] for item in items[:5]}) == 5


def test_options_build_from_config_values_and_refuse_bad_ones():
    options = build(LmEvalOptions, {"tasks": [TASK], "limit": 24})
    assert options.tasks == [TASK] and options.limit == 24 and options.batch_size == 8 and options.dtype == "float32"
    assert LmEvalOptions().tasks == [] and LmEvalOptions().include_path is None
    for bad in ({"limit": 0}, {"batch_size": 0}, {"num_fewshot": -1}, {"dtype": "fp8"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LmEvalOptions(**bad)


def test_no_tasks_is_no_evaluation(tmp_path):
    assert run_lm_eval("no/such/model", LmEvalOptions(), out_dir=tmp_path, device="cpu") == {}
    assert not any(tmp_path.iterdir())


def test_the_row_names_metrics_without_the_none_filter_and_keeps_other_filters():
    results = {
        "results": {
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.25,
                "exact_match_stderr,strict-match": 0.05,
                "exact_match,flexible-extract": 0.5,
                "exact_match_stderr,flexible-extract": "N/A",
            },
            "arc_easy": {"alias": "arc_easy", "sample_len": 10, "acc,none": 0.75, "acc_stderr,none": 0.1},
        }
    }
    assert results_row(results, ["gsm8k", "arc_easy"]) == {
        "lm_eval_gsm8k_exact_match_strict-match": 0.25,
        "lm_eval_gsm8k_exact_match_strict-match_stderr": 0.05,
        "lm_eval_gsm8k_exact_match_flexible-extract": 0.5,
        "lm_eval_gsm8k_exact_match_flexible-extract_stderr": None,
        "lm_eval_arc_easy_acc": 0.75,
        "lm_eval_arc_easy_acc_stderr": 0.1,
        "lm_eval_tasks": "gsm8k,arc_easy",
    }


def test_an_unknown_task_names_itself_the_folder_searched_and_close_matches(tmp_path):
    pytest.importorskip("lm_eval")
    with pytest.raises(ValueError) as error:
        run_lm_eval("no/such/model", LmEvalOptions(tasks=["admap_quantites"]), out_dir=tmp_path, device="cpu")
    message = str(error.value)
    assert "'admap_quantites'" in message and str(SHIPPED_TASKS) in message and f"'{TASK}'" in message


def test_results_are_reused_for_equal_settings_and_evaluated_again_otherwise(tmp_path, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval")
    calls = []

    def simple_evaluate(**kwargs):
        calls.append(kwargs)
        return {"results": {TASK: {"alias": TASK, "acc,none": 0.5, "acc_stderr,none": 0.1}}, "samples": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    options = LmEvalOptions(tasks=[TASK], limit=3)
    row = run_lm_eval("model-a", options, out_dir=tmp_path, device="cpu")
    assert row == {f"lm_eval_{TASK}_acc": 0.5, f"lm_eval_{TASK}_acc_stderr": 0.1, "lm_eval_tasks": TASK}
    (call,) = calls
    assert call["model_args"] == {"pretrained": "model-a", "dtype": "float32"} and call["log_samples"] is False
    assert call["limit"] == 3 and call["tasks"] == [TASK] and call["device"] == "cpu"

    assert run_lm_eval("model-a", options, out_dir=tmp_path, device="cpu") == row
    assert len(calls) == 1
    run_lm_eval("model-b", options, out_dir=tmp_path, device="cpu")
    run_lm_eval("model-b", LmEvalOptions(tasks=[TASK], limit=4), out_dir=tmp_path, device="cpu")
    assert len(calls) == 3
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["settings"]["model_path"] == "model-b" and record["settings"]["limit"] == 4
    assert record["lm_eval_version"] == lm_eval.__version__


def test_the_shipped_task_loads_its_data_from_any_current_directory(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from admap_experiments.evaluate.lm_evaluation import _task_manager

    monkeypatch.chdir(tmp_path)
    task = _task_manager(SHIPPED_TASKS).load([TASK])["tasks"][TASK]
    docs = list(task.test_docs())
    assert docs == read_items()
    first = docs[0]
    assert task.doc_to_text(first) == f"Question: {first['question']}\nAnswer:"
    assert task.doc_to_choice(first) == first["choices"] and task.doc_to_target(first) == first["answer"]


def choice_log_likelihoods(model, tokenizer, context: str, choices: list[str]) -> list[float]:
    """The summed log-probability of each `` choice`` after ``context``: the continuation's tokens are those the
    whole text has beyond the context's. The choices go through the model as one batch, padded on the right,
    where padding cannot change what the causal model computes for the tokens before it."""
    import torch

    context_ids = tokenizer(context)["input_ids"]
    texts = [tokenizer(context + " " + choice)["input_ids"] for choice in choices]
    assert all(ids[: len(context_ids)] == context_ids for ids in texts)
    width = max(len(ids) for ids in texts)
    batch = torch.tensor([ids + [0] * (width - len(ids)) for ids in texts])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in texts])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(batch, attention_mask=mask).logits.double(), dim=-1)
    # The token at position p is predicted by the logits at p - 1.
    return [
        sum(log_probs[row, position - 1, ids[position]].item() for position in range(len(context_ids), len(ids)))
        for row, ids in enumerate(texts)
    ]


@pytest.mark.slow
def test_lm_eval_on_smollm2_scores_what_the_log_likelihoods_say(tmp_path):
    pytest.importorskip("lm_eval")
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from admap_experiments.train import policy_checkpoint

    checkpoint = policy_checkpoint("smollm2")
    limit = 24
    options = LmEvalOptions(tasks=[TASK], limit=limit)
    out_dir = tmp_path / "eval" / "lm_eval"
    row = run_lm_eval(checkpoint, options, out_dir=out_dir, device="cpu")

    metrics = [f"lm_eval_{TASK}_{name}" for name in ("acc", "acc_norm")]
    assert set(row) == {*metrics, *(f"{name}_stderr" for name in metrics), "lm_eval_tasks"}
    assert row["lm_eval_tasks"] == TASK
    for name in metrics:
        assert 0 <= row[name] <= 1 and row[f"{name}_stderr"] > 0

    results_file = out_dir / "results.json"
    record = json.loads(results_file.read_text())
    assert record["settings"]["model_path"] == checkpoint and record["settings"]["limit"] == limit
    assert "samples" not in record["results"] and record["results"]["results"][TASK]["sample_len"] == limit
    written = results_file.stat().st_mtime_ns
    assert run_lm_eval(checkpoint, options, out_dir=out_dir, device="cpu") == row
    assert results_file.stat().st_mtime_ns == written

    # lm-eval's accuracy is the share of items whose gold choice has the highest log-likelihood (acc), or the
    # highest per character (acc_norm): computed here for the same items with transformers directly.
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    correct, correct_norm = [], []
    for item in read_items()[:limit]:
        context = f"Question: {item['question']}\nAnswer:"
        scores = np.array(choice_log_likelihoods(model, tokenizer, context, item["choices"]))
        correct.append(int(np.argmax(scores)) == item["answer"])
        lengths = np.array([len(choice) for choice in item["choices"]], dtype=float)
        correct_norm.append(int(np.argmax(scores / lengths)) == item["answer"])
    assert row[f"lm_eval_{TASK}_acc"] == pytest.approx(sum(correct) / limit)
    assert row[f"lm_eval_{TASK}_acc_norm"] == pytest.approx(sum(correct_norm) / limit)
