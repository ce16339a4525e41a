"""Capability retention after DPO: EleutherAI's lm-evaluation-harness (``lm_eval.simple_evaluate``) on the
trained checkpoint, so that a run shows whether preference training broke what the model could do before.

Offline, the task shipped in ``admap_experiments/lm_eval_tasks`` (``admap_quantities``) runs with no hub; with
hub access any task lm-eval knows (``arc_easy``, ``hellaswag``, ``mmlu``) runs as well.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from admap.config import option, to_dict
from admap.durable import publish

SHIPPED_TASKS = Path(__file__).resolve().parents[1] / "lm_eval_tasks"
DTYPES = ("float32", "bfloat16", "float16", "auto")
RESULTS_FILE = "results.json"


@dataclass
class LmEvalOptions:
    tasks: list[str] = option(
        [],
        "lm-eval task, group or tag names (none: the stage is off): admap_quantities (shipped, offline), or with "
        "hub access any of lm-eval's, e.g. arc_easy, hellaswag",
    )
    include_path: str | None = option(
        None, "a folder of lm-eval task YAMLs searched besides lm-eval's own (None: the folder shipped with admap)"
    )
    limit: int | None = option(None, "first N documents of each task (None: all)")
    num_fewshot: int | None = option(None, "few-shot examples per prompt (None: each task's own default)")
    batch_size: int = option(8, "documents per forward pass")
    dtype: str = option("float32", f"weights' dtype while evaluating: one of {', '.join(DTYPES)}")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"evaluation.lm_eval.limit must be >= 1, got {self.limit}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ValueError(f"evaluation.lm_eval.num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ValueError(f"evaluation.lm_eval.batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"evaluation.lm_eval.dtype must be one of {DTYPES}, got {self.dtype!r}")


def task_folder(options: LmEvalOptions) -> Path:
    """The folder of task YAMLs searched besides lm-eval's own."""
    return Path(options.include_path) if options.include_path is not None else SHIPPED_TASKS


@functools.cache
def _task_manager(include_path: Path):
    """One index per folder and process: lm-eval reads its thousands of task YAMLs to build it (about 10 s)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(include_path))


def check_tasks(options: LmEvalOptions) -> None:
    """Raises ValueError for a task name lm-eval does not know, with the folder searched and close matches."""
    folder = task_folder(options)
    known = _task_manager(folder).all_tasks
    for name in options.tasks:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"evaluation.lm_eval.tasks: {name!r} is not a task, group or tag of lm-eval or of the include path "
                f"{folder}{hint}"
            )


def run_lm_eval(model_path: str, options: LmEvalOptions, *, out_dir: Path, device: str) -> dict:
    """lm-eval's scores of the model at ``model_path`` (a transformers checkpoint or hub id) on ``options.tasks``,
    evaluated on ``device`` (cpu, cuda, cuda:N), as a flat results row (`results_row`); ``{}`` when no task is set.

    lm-eval's results (without per-sample logs), the settings and lm-eval's version go to ``out_dir/results.json``,
    which a later call with the same settings and model path reads instead of evaluating again."""
    if not options.tasks:
        return {}
    path = Path(out_dir) / RESULTS_FILE
    settings = {"model_path": model_path, **to_dict(options)}
    record = _read_record(path)
    if record is None or record.get("settings") != settings:
        record = _evaluate(model_path, options, settings, path, device=device)
    return results_row(record["results"], options.tasks)


def _read_record(path: Path) -> dict | None:
    """The record `_evaluate` wrote, or None where there is none or it is not one (a file edited by hand)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    complete = isinstance(record, dict) and isinstance(record.get("results"), dict) and "results" in record["results"]
    return record if complete else None


def _evaluate(model_path: str, options: LmEvalOptions, settings: dict, path: Path, *, device: str) -> dict:
    import lm_eval
    from lm_eval.utils import handle_non_serializable

    check_tasks(options)
    folder = task_folder(options)
    # simple_evaluate seeds Python, NumPy, torch and the few-shot sampler with fixed defaults: equal settings
    # give equal scores, which is what makes reusing results.json sound.
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": model_path, "dtype": options.dtype},
        tasks=list(options.tasks),
        task_manager=_task_manager(folder),
        limit=options.limit,
        num_fewshot=options.num_fewshot,
        batch_size=options.batch_size,
        device=device,
        log_samples=False,
    )
    record = {
        "settings": settings,
        "include_path": str(folder),
        "device": device,
        "lm_eval_version": lm_eval.__version__,
        "results": results,
    }
    # Through JSON and back, so that a fresh row and a reused one are made from the same values.
    text = json.dumps(record, indent=2, default=handle_non_serializable)
    publish(path, lambda staging: staging.write_text(text + "\n", encoding="utf-8"))
    return json.loads(text)


def results_row(results: dict, tasks: list[str]) -> dict:
    """``lm_eval_<task>_<metric>`` and ``lm_eval_<task>_<metric>_stderr`` for every task and group in lm-eval's
    results, plus ``lm_eval_tasks``, the names asked for. lm-eval names a score ``<metric>,<filter>``: the filter
    is dropped where it is ``none`` and joined with ``_`` otherwise; a standard error lm-eval did not compute
    ("N/A") is None."""
    row = {}
    for task, scores in results["results"].items():
        for key, value in scores.items():
            if "," not in key:  # alias, name, sample_len: about the task, not scores
                continue
            metric, filter_name = key.split(",", 1)
            name = metric.removesuffix("_stderr")
            if filter_name != "none":
                name = f"{name}_{filter_name}"
            if metric.endswith("_stderr"):
                name = f"{name}_stderr"
            row[f"lm_eval_{task}_{name}"] = value if isinstance(value, float | int) else None
    row["lm_eval_tasks"] = ",".join(tasks)
    return row
