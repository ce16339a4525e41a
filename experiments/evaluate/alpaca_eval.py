"""AlpacaEval 2 through the ``alpaca_eval`` package (optional: ``pip install alpaca-eval``, admap's ``eval`` extra).

The 805 AlpacaEval instructions come from the hub dataset tatsu-lab/alpaca_eval (its ``alpaca_eval.json``) or a
local JSON / JSONL copy. A model's answers (FastChat records from `admap_experiments.evaluate.answers.generate_answers`)
become AlpacaEval's model outputs ``[{instruction, output, generator, dataset}]``; ``alpaca_eval.evaluate`` then
compares them with the reference outputs through an annotator config, which calls the OpenAI API.

The default annotator config is AlpacaEval 2's ``weighted_alpaca_eval_gpt4_turbo``; the package also ships
``weighted_alpaca_eval_gpt-4o-mini-2024-07-18``, and a config for the paper's gpt-4o-2024-11-20 is a copy of
either with ``model_name`` changed (pass its path). alpaca-eval 0.6.6 reads its default reference outputs through
a dataset loading script, which ``datasets`` >= 4 no longer runs; ``reference_outputs`` defaults to the hub's
``alpaca_eval_gpt4_baseline.json`` file instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import yaml

from admap.errors import InputError
from admap_experiments.evaluate.answers import ERROR_MARKER, answer_turns, index_answers
from admap_experiments.evaluate.data import Question

logger = logging.getLogger(__name__)

ALPACA_EVAL_DATASET = "tatsu-lab/alpaca_eval"
INSTRUCTIONS_FILE = "alpaca_eval.json"
REFERENCE_FILE = "alpaca_eval_gpt4_baseline.json"
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
OUTPUTS_FILE = "model_outputs.json"
API_KEY_ENV = "OPENAI_API_KEY"


def _hub_file(filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ALPACA_EVAL_DATASET, filename, repo_type="dataset"))
    except Exception as error:  # offline, missing, network: all mean "pass a local copy"
        raise InputError(
            f"{ALPACA_EVAL_DATASET}/{filename}",
            None,
            None,
            f"could not be loaded from the Hugging Face hub ({type(error).__name__}: {error}); "
            "pass a local copy of the file instead",
        ) from error


def _read_records(path: Path) -> list[tuple[int, dict]]:
    """``(row, record)`` from a JSON list (row: 1-based position) or a JSONL file (row: line)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(str(path), None, None, f"not JSON ({error.msg})") from None
        return list(enumerate(records, start=1))
    from admap.load.readers import iter_jsonl

    return list(iter_jsonl(path))


def load_alpaca_eval_instructions(source: str | Path = ALPACA_EVAL_DATASET) -> list[Question]:
    """The AlpacaEval instructions as one-turn questions (``question_id``: position from 0, ``category``: the
    ``dataset`` field), from the hub id ``tatsu-lab/alpaca_eval`` or a local JSON / JSONL file."""
    path = _hub_file(INSTRUCTIONS_FILE) if str(source) == ALPACA_EVAL_DATASET else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    questions = []
    for row, record in _read_records(path):
        if not isinstance(record, dict):
            raise InputError(str(path), row, None, f"a JSON {type(record).__name__}, not an object")
        instruction = record.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(str(path), row, "instruction", "must be a non-empty string")
        questions.append(Question(len(questions), str(record.get("dataset") or ""), (instruction,)))
    if not questions:
        raise InputError(str(path), None, None, "holds no instructions")
    return questions


def alpaca_eval_outputs(questions: Sequence[Question], answers: Sequence[dict], *, generator: str) -> list[dict]:
    """AlpacaEval model outputs ``{instruction, output, generator, dataset}``, one per question, in order.

    A failed answer (``$ERROR$``) is written as an empty output, which the annotator judges as a loss; the
    count is logged.
    """
    indexed = index_answers(list(answers))
    missing = [q.question_id for q in questions if q.question_id not in indexed]
    if missing:
        raise ValueError(f"no answer to {len(missing)} AlpacaEval instructions: {missing[:10]}")
    outputs, failed = [], 0
    for question in questions:
        text = answer_turns(indexed[question.question_id])[0]
        if text == ERROR_MARKER:
            failed += 1
            text = ""
        outputs.append(
            {"instruction": question.turns[0], "output": text, "generator": generator, "dataset": question.category}
        )
    if failed:
        logger.warning("AlpacaEval: %d of %d answers failed and are written as empty outputs", failed, len(outputs))
    return outputs


def write_alpaca_eval_outputs(path: str | Path, outputs: Sequence[dict]) -> Path:
    """Write model outputs as the JSON list that ``alpaca_eval`` reads (``model_outputs.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(outputs), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def _pkg_resources_shim() -> types.ModuleType:
    """The two functions of ``pkg_resources`` that alpaca-eval 0.6.6 calls (``parse_version``,
    ``get_distribution(name).version``), from ``packaging`` and ``importlib.metadata``: setuptools 81
    and later no longer ship ``pkg_resources``."""
    from importlib import metadata

    from packaging.version import parse

    shim = types.ModuleType("pkg_resources")
    shim.parse_version = parse
    shim.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))
    return shim


def _import_alpaca_eval():
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _pkg_resources_shim()
    try:
        import alpaca_eval
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "AlpacaEval needs the alpaca_eval package: pip install alpaca-eval "
            "(or admap's extra: pip install -e '.[eval]')"
        ) from error
    return alpaca_eval


def prepared_annotator(annotators_config: str, out_dir: Path, evaluators_dir: Path) -> str:
    """An annotator given as a config file (or its folder) is copied to ``out_dir/annotator/<name>/configs.yaml``
    with each relative prompt template made absolute (found beside the config, else among alpaca-eval's own
    configs in ``evaluators_dir``): AlpacaEval then caches its annotations in the run's folder, not beside the
    shipped file. A name of one of alpaca-eval's own annotators is returned as it is."""
    path = Path(annotators_config)
    if path.is_dir():
        path = path / "configs.yaml"
    if not path.is_file():
        return annotators_config
    configs = yaml.safe_load(path.read_text(encoding="utf-8"))
    for settings in configs.values():
        template = settings.get("prompt_template")
        if template and not Path(template).is_absolute():
            found = [
                base / template for base in (path.parent.parent, Path(evaluators_dir)) if (base / template).is_file()
            ]
            if not found:
                raise InputError(f"{path}: prompt_template {template!r} is neither beside it nor in alpaca-eval")
            settings["prompt_template"] = str(found[0].resolve())
    target = out_dir / "annotator" / path.parent.name / "configs.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(configs, sort_keys=False), encoding="utf-8")
    return str(target)


def run_alpaca_eval(
    outputs_path: str | Path,
    *,
    out_dir: str | Path,
    name: str,
    annotators_config: str = DEFAULT_ANNOTATOR,
    reference_outputs: str | Path | None = None,
    length_controlled: bool = True,
) -> dict[str, float | int]:
    """Run ``alpaca_eval.evaluate`` on the model outputs at ``outputs_path`` and return ``alpaca_eval_win_rate``
    (a fraction, ties half), ``alpaca_eval_win_rate_se``, ``alpaca_eval_lc_win_rate`` (length-controlled, when
    computed), ``alpaca_eval_n`` and ``alpaca_eval_avg_length``. AlpacaEval writes its leaderboard and
    annotations under ``out_dir``. ``length_controlled``: AlpacaEval 2's length-controlled win rate, whose model
    reads a table from the hub (``tatsu-lab/alpaca_eval``); off, the plain win rate alone, with no hub access.

    Needs the ``alpaca_eval`` package and ``OPENAI_API_KEY`` in the environment (read by the package itself; it
    is never passed through here); without either, a RuntimeError says how to enable it.
    """
    if not os.environ.get(API_KEY_ENV, "").strip():
        raise RuntimeError(
            f"AlpacaEval's annotator ({annotators_config}) calls the OpenAI API: set the environment variable "
            f"{API_KEY_ENV} to run it"
        )
    alpaca_eval = _import_alpaca_eval()
    reference = Path(reference_outputs) if reference_outputs is not None else _hub_file(REFERENCE_FILE)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    from alpaca_eval import constants

    leaderboard, _ = alpaca_eval.evaluate(
        model_outputs=str(outputs_path),
        reference_outputs=str(reference),
        annotators_config=prepared_annotator(annotators_config, Path(out_dir), constants.EVALUATORS_CONFIG_DIR),
        name=name,
        output_path=str(out_dir),
        precomputed_leaderboard=None,
        is_return_instead_of_print=True,
        fn_metric="get_length_controlled_winrate" if length_controlled else "get_winrate",
        sort_by="length_controlled_winrate" if length_controlled else "win_rate",
    )
    row = leaderboard.loc[name]
    result = {
        "alpaca_eval_win_rate": float(row["win_rate"]) / 100,  # AlpacaEval reports percentages
        "alpaca_eval_win_rate_se": float(row["standard_error"]) / 100,
        "alpaca_eval_n": int(row["n_total"]),
        "alpaca_eval_avg_length": int(row["avg_length"]),
    }
    if "length_controlled_winrate" in row:
        result["alpaca_eval_lc_win_rate"] = float(row["length_controlled_winrate"]) / 100
    return result
