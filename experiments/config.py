"""One experiment's configuration: which map, which subset, how DPO trains, how answers are judged.

A YAML recipe (``experiments/configs/*.yaml``) is read into `ExperimentConfig`; the command-line
flags of ``python -m admap_experiments.run`` are generated from the same dataclasses, and unknown keys
are refused at every level, TRL's ``DPOConfig`` and peft's ``LoraConfig`` fields included.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from admap.commands.map import MapConfig
from admap.config import option, to_dict
from admap.generate.options import GeneratorOptions
from admap_baselines import SelectionOptions
from admap_experiments.evaluate.answer_judges import JUDGES
from admap_experiments.evaluate.lm_evaluation import LmEvalOptions
from admap_experiments.evaluate.preference_accuracy import PreferenceAccuracyOptions
from admap_experiments.held_out import HeldOutOptions

STAGES = ("select", "train", "preference_accuracy", "lm_eval", "answer", "judge")
WANDB_MODES = ("offline", "online", "disabled")
# The runner owns these DPOConfig fields: where the checkpoint goes and where metrics are reported.
RUNNER_DPO_FIELDS = ("output_dir", "report_to", "run_name", "logging_dir")


def _check_fields(values: dict, known: set[str], *, owner: str, field: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"{field}: {key!r} is not a field of {owner}{hint}")


def dpo_config_fields() -> set[str]:
    from trl import DPOConfig

    return {f.name for f in dataclasses.fields(DPOConfig) if f.init}


def lora_config_fields() -> set[str]:
    from peft import LoraConfig

    return {f.name for f in dataclasses.fields(LoraConfig) if f.init}


@dataclass
class TrainOptions:
    model: str = option("smollm2", "policy to train: smollm2 (the offline default), a hub id or a local path")
    dpo: dict = option({}, "TRL DPOConfig fields (beta, learning_rate, max_steps, ...); unknown names are refused")
    lora: dict | None = option(
        None, "peft LoraConfig fields to train a LoRA adapter instead of all weights, e.g. {r: 16, lora_alpha: 32}"
    )
    pair_margins: bool = option(True, "record every pair's DPO implicit reward margin at each epoch end")
    pair_margins_every: int | None = option(
        None,
        "also record every pair's margin every N optimizer steps (None: epoch ends only); training dynamics need "
        "at least 2 recording points, which a run of a few steps inside one epoch only gets this way",
    )
    device: str = option("auto", "auto, cpu or cuda (multi-GPU: launch with accelerate)")
    global_batch_size: int | None = option(
        None,
        "pairs per optimizer step, kept equal across launch modes: gradient accumulation is derived from the "
        "number of processes and dpo.per_device_train_batch_size (None: dpo.gradient_accumulation_steps decides; "
        "the two cannot both be set)",
    )
    memory_check: bool = option(
        True, "log the per-GPU memory estimate before training and refuse a configuration that cannot fit the GPU"
    )
    validation_fraction: float = option(
        0.0,
        "share of the selected pairs held out (drawn with dpo.seed, as LLaMA-Factory's val_size) and scored by "
        "TRL's evaluation after training (eval_loss, eval_rewards/accuracies in train.json); the authors: 0.01",
    )

    def __post_init__(self) -> None:
        reserved = [key for key in self.dpo if key in RUNNER_DPO_FIELDS]
        if reserved:
            raise ValueError(f"train.dpo: {reserved} are set by the runner (the run directory and W&B)")
        _check_fields(self.dpo, dpo_config_fields(), owner="trl.DPOConfig", field="train.dpo")
        if self.lora is not None:
            _check_fields(self.lora, lora_config_fields(), owner="peft.LoraConfig", field="train.lora")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"train.validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.pair_margins_every is not None and self.pair_margins_every < 1:
            raise ValueError(f"train.pair_margins_every must be >= 1 (or None), got {self.pair_margins_every}")
        if self.global_batch_size is not None:
            if self.global_batch_size < 1:
                raise ValueError(f"train.global_batch_size must be >= 1, got {self.global_batch_size}")
            if "gradient_accumulation_steps" in self.dpo:
                raise ValueError(
                    f"train.global_batch_size ({self.global_batch_size}) and train.dpo.gradient_accumulation_steps "
                    f"({self.dpo['gradient_accumulation_steps']}) are both set: keep global_batch_size, which derives "
                    "the accumulation from the number of processes"
                )


@dataclass
class EvaluationOptions:
    preference_accuracy: PreferenceAccuracyOptions = option(
        PreferenceAccuracyOptions(),
        "held-out preference accuracy (stage preference_accuracy; runs when held_out sets pairs aside)",
        prefix="preference_",
    )
    lm_eval: LmEvalOptions = option(
        LmEvalOptions(),
        "capability retention: lm-eval tasks on the trained and the untrained policy (stage lm_eval; runs when "
        "tasks are set)",
        prefix="lm_eval_",
    )
    mt_bench: str | None = option(
        None, "MT-Bench: a folder with question.jsonl, reference_answer/gpt-4.jsonl, judge_prompts.jsonl (None: skip)"
    )
    mt_bench_questions: int | None = option(None, "first N MT-Bench questions (None: all 80)")
    mt_bench_mode: Literal["single", "pairwise", "both"] = option(
        "single",
        "single-answer grading (1-10), pairwise against the reference answers (both orders), or both (the authors')",
    )
    evol_instruct: str | None = option(None, "Evol-Instruct test set (WizardLM_testset.jsonl) (None: skip)")
    evol_instruct_questions: int | None = option(None, "first N Evol-Instruct instructions (None: all 218)")
    alpaca_eval: str | None = option(
        None, "AlpacaEval instructions: tatsu-lab/alpaca_eval or alpaca_eval.json (None: skip; needs alpaca_eval)"
    )
    alpaca_eval_questions: int | None = option(None, "first N AlpacaEval instructions (None: all 805)")
    alpaca_eval_annotator: str = option(
        "weighted_alpaca_eval_gpt4_turbo",
        "alpaca_eval annotators config: one of its names, or a config file or folder (the authors': "
        "experiments/configs/alpaca_eval/alpaca_eval_gpt4o)",
    )
    alpaca_eval_length_controlled: bool = option(
        True, "AlpacaEval 2's length-controlled win rate too (its model reads a table from the hub)"
    )
    reference_answers: str = option(
        "base",
        "opponent in pairwise judging: 'base' (the policy before DPO, answered once per experiment), 'baseline' "
        "(the `baseline` model's answers, generated once through its generator and cached: the authors judged "
        "against FastChat's default baseline, gpt-3.5-turbo) or a folder of FastChat answer files "
        "(mt_bench.jsonl, evol_instruct.jsonl)",
    )
    baseline: GeneratorOptions = option(
        GeneratorOptions(
            generator="openai",
            generator_model="gpt-3.5-turbo",
            max_new_tokens=1024,
            system_prompt="You are a helpful assistant.",
        ),
        "reference_answers 'baseline': the baseline model and its generator (any OpenAI-compatible endpoint; "
        "FastChat's gpt-3.5-turbo answers with 1024 new tokens and this system prompt)",
        prefix="baseline_",
    )
    answer: GeneratorOptions = option(
        GeneratorOptions(max_new_tokens=512, system_prompt="", cache=False),
        "how the trained policy answers (its model is the run's checkpoint)",
        prefix="answer_",
    )
    judge_prompts: str | None = option(
        None, "FastChat judge_prompts.jsonl (or its folder) (default: the MT-Bench folder's)"
    )
    judge: str = option(
        "logprob",
        "a registered answer judge (admap_experiments.evaluate.JUDGES): logprob, a local model's probabilities of each "
        "verdict (small models do not follow the format); generate, free-form verdicts through any generator, "
        "parsed as FastChat does (GPT-4o, a vLLM server)",
    )
    judge_generation: GeneratorOptions = option(
        GeneratorOptions(max_new_tokens=2048), "the judge model (FastChat's judge: 2048 new tokens)", prefix="judge_"
    )

    def __post_init__(self) -> None:
        for name in ("mt_bench_questions", "evol_instruct_questions", "alpaca_eval_questions"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"evaluation.{name} must be >= 1, got {value}")
        if self.evol_instruct and not (self.judge_prompts or self.mt_bench):
            raise ValueError("evaluation.evol_instruct needs judge prompts: set judge_prompts or mt_bench")
        JUDGES.get(self.judge)  # an unknown name gets close matches


@dataclass
class WandbOptions:
    mode: Literal["offline", "online", "disabled"] = option(
        "offline", "offline writes a local run directory (no login; `wandb sync` it later); online needs a login"
    )
    project: str = option("admap", "W&B project")
    entity: str | None = option(None, "W&B entity (team or user)")

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ValueError(f"wandb.mode must be one of {WANDB_MODES}, got {self.mode!r}")


@dataclass
class ExperimentConfig:
    """`python -m admap_experiments.run`: map, select a subset, train DPO on it, answer and judge benchmarks."""

    name: str = option("experiment", "experiment name: runs go to OUT/NAME/runs/<run id>, rows to OUT/NAME/results")
    out: str = option("runs/experiments", "output folder")
    map: MapConfig = option(MapConfig(), "the data map (default folder: OUT/NAME/maps/<settings hash>)", prefix="map_")
    map_run: str | None = option(None, "reuse this `admap map` run directory instead of building the map")
    held_out: HeldOutOptions = option(
        HeldOutOptions(), "preference pairs set aside before the map, never selected or trained on", prefix="held_out_"
    )
    selection: SelectionOptions = option(SelectionOptions(), "which instructions to train on")
    train: TrainOptions = option(TrainOptions(), "DPO with TRL", prefix="train_")
    evaluation: EvaluationOptions = option(EvaluationOptions(), "benchmarks and judge")
    wandb: WandbOptions = option(WandbOptions(), "Weights & Biases logging", prefix="wandb_")
    stages: list[str] = option(list(STAGES), f"stages to run, in order: {', '.join(STAGES)}")

    def __post_init__(self) -> None:
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(f"stages: unknown {unknown}; known: {list(STAGES)}")
        if self.map_run and self.held_out.fraction:
            raise ValueError(
                "held_out.fraction sets instructions aside before the map is built, and map_run names a map built "
                "already: give the held-out pairs as held_out.dataset instead"
            )

    @property
    def experiment_dir(self) -> Path:
        return Path(self.out) / self.name

    def map_fingerprint(self) -> str:
        """Names the map's folder: two runs share a map exactly when their map settings agree (where
        and on which engine the texts were embedded does not change the map)."""
        settings = to_dict(self.map) | {"out": None}
        settings["embedding"] = {k: v for k, v in settings["embedding"].items() if k not in PLACEMENT_KEYS}
        if self.held_out.fraction:  # the map is built from what the split leaves
            settings["held_out"] = to_dict(self.held_out)
        return fingerprint(settings)

    def held_out_fingerprint(self) -> str:
        """Names the held-out pairs' folder: the dataset read and how the pairs were set aside."""
        return fingerprint({"input": to_dict(self.map.input), "held_out": to_dict(self.held_out)})

    def run_id(self) -> str:
        """Unique per configuration: readable fields, then a hash of everything that changes the result."""
        fraction = "region" if self.selection.fraction is None else f"f{self.selection.fraction:g}"
        varying = to_dict(self)
        for key in ("name", "out", "wandb", "stages"):
            varying.pop(key)
        readable = f"{self.selection.strategy}-{fraction}-{self.map.scorer}-seed{self.selection.seed}"
        return f"{readable}-{fingerprint(varying)}"


# Embedding settings that say where the work runs and where its cache lives, not what it computes.
PLACEMENT_KEYS = ("engine", "ray_address", "ray_actors", "embedding_cache", "embedding_cache_dir")


def fingerprint(values: dict) -> str:
    """A short hash of ``values`` that names a folder: equal settings, equal name."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]
