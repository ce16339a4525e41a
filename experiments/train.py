"""DPO with TRL on one subset's pairs, and every pair's implicit reward margin at each epoch end.

TRL logs batch means of the reward margin; a data map of training dynamics (Dataset Cartography)
needs each pair's margin after each epoch, so `PairMarginRecorder` scores the whole training set
with the policy and the reference model at every epoch end.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from admap.generate.local import load_causal_lm
from admap.models import materialize_gguf, pick_device, resolve_generator_model
from experiments.config import TrainOptions

logger = logging.getLogger(__name__)

MARGIN_COLUMNS = ["pair_index", "instruction_id", "chosen_id", "rejected_id", "epoch", "step", "margin"]


def policy_checkpoint(model: str) -> str:
    """A path or hub id TRL can load the policy (and its reference copy) from. The offline default
    is a GGUF file, which TRL cannot train; it is dequantised once into a cached checkpoint."""
    path, gguf_file = resolve_generator_model(model)
    return str(materialize_gguf(path, gguf_file)) if gguf_file is not None else path


def dpo_arguments(options: TrainOptions, *, output_dir: Path, run_name: str, report_to: list[str], device: str):
    """``trl.DPOConfig`` from the recipe's fields, with the runner's defaults under them: no
    checkpoints mid-run (the final model is saved once), a log line every step, and on a CPU no
    bf16 (TRL turns it on where the hardware supports it)."""
    from trl import DPOConfig

    defaults = {"save_strategy": "no", "logging_steps": 1}
    if device == "cpu":
        defaults |= {"use_cpu": True, "bf16": False}
    fields = defaults | options.dpo | {"output_dir": str(output_dir), "run_name": run_name, "report_to": report_to}
    return DPOConfig(**fields)


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}


def sequence_logps(trainer, model, batch: dict):
    """Summed log-probabilities of each completion under ``model``: ``(chosen, rejected)``, the
    same quantity TRL's DPO loss uses."""
    import torch

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    seq_len = batch["completion_mask"].size(1) - 1
    with torch.no_grad():
        outputs = model(**_model_inputs(batch), labels=labels, use_cache=False, fused_lm_head=True)
    return outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)


def pair_margins(trainer, *, batch_size: int) -> list[float]:
    """β · ((log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)) for every training pair, in
    dataset order."""
    import torch
    from torch.utils.data import DataLoader

    dataset = trainer.train_dataset
    keep = [c for c in dataset.column_names if c.endswith("_ids") or c.startswith("ref_")]
    loader = DataLoader(dataset.select_columns(keep), batch_size=batch_size, collate_fn=trainer.data_collator)
    model = trainer.model
    was_training = model.training
    model.eval()
    margins: list[float] = []
    try:
        for batch in loader:
            batch = {k: v.to(trainer.accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            chosen, rejected = sequence_logps(trainer, model, batch)
            if "ref_chosen_logps" in batch:
                ref_chosen, ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model or model, batch)
            margin = trainer.beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
            margins += margin.float().cpu().tolist()
    finally:
        model.train(was_training)
    return margins


def pair_margin_recorder(pairs: pd.DataFrame, *, batch_size: int):
    """A TrainerCallback that scores every pair at each epoch end (and at the end of a run stopped
    by ``max_steps`` mid-epoch, which is an epoch end for the Trainer too)."""
    from transformers import TrainerCallback

    class PairMarginRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.trainer = None
            self.rows: list[pd.DataFrame] = []

        def on_epoch_end(self, args, state, control, **kwargs):
            margins = pair_margins(self.trainer, batch_size=batch_size)
            if len(margins) != len(pairs):
                raise RuntimeError(f"scored {len(margins)} pairs, the training set has {len(pairs)}")
            frame = pairs[["instruction_id", "chosen_id", "rejected_id"]].copy()
            frame.insert(0, "pair_index", range(len(pairs)))
            frame["epoch"] = round(state.epoch, 4)
            frame["step"] = state.global_step
            frame["margin"] = margins
            self.rows.append(frame)
            logger.info("epoch %.2f: mean pair margin %.4f", state.epoch, float(pd.Series(margins).mean()))

        def table(self) -> pd.DataFrame:
            return pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(columns=MARGIN_COLUMNS)

    return PairMarginRecorder()


def _final_metrics(trainer, train_output) -> dict:
    """The last logged value of each TRL metric (loss, rewards/accuracies, rewards/margins, ...)."""
    last: dict[str, float] = {}
    for record in trainer.state.log_history:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                last[key] = value
    metrics = {f"train/{k}": v for k, v in last.items() if k not in ("epoch", "step")}
    metrics |= {
        "train_steps": int(trainer.state.global_step),
        "train_loss": float(train_output.training_loss),
        "train_runtime_s": float(train_output.metrics.get("train_runtime", float("nan"))),
    }
    return metrics


def train_dpo(
    pairs_path: Path, pairs: pd.DataFrame, options: TrainOptions, *, out_dir: Path, run_name: str, report_to: list[str]
) -> tuple[Path, dict, pd.DataFrame]:
    """Train DPO on the TRL records in ``pairs_path`` (``pairs`` is the same rows as a table, for
    the margin records). Returns ``(model directory, final metrics, pair margins per epoch)``; with
    LoRA the adapter is merged so the directory holds a complete model for generation."""
    from datasets import load_dataset
    from trl import DPOTrainer

    device = pick_device(options.device)
    checkpoint = policy_checkpoint(options.model)
    args = dpo_arguments(options, output_dir=out_dir / "trainer", run_name=run_name, report_to=report_to, device=device)
    dataset = load_dataset("json", data_files=str(pairs_path), split="train")
    model, tokenizer = load_causal_lm(checkpoint, device=device, dtype="bfloat16" if args.bf16 else "float32")
    # load_causal_lm pads on the left for generation; TRL pads training batches itself.
    tokenizer.padding_side = "right"
    peft_config = None
    if options.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(**({"task_type": "CAUSAL_LM", "target_modules": "all-linear"} | options.lora))
    trainer = DPOTrainer(
        model=model.train(), args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    recorder = None
    if options.pair_margins:
        recorder = pair_margin_recorder(pairs, batch_size=args.per_device_eval_batch_size)
        recorder.trainer = trainer
        trainer.add_callback(recorder)
    output = trainer.train()
    model_dir = out_dir / "model"
    tokenizer.padding_side = "left"
    if peft_config is None:
        trainer.save_model(str(model_dir))  # also gathers sharded (DeepSpeed, FSDP) weights
    else:
        merged = trainer.model.merge_and_unload()
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
    margins = recorder.table() if recorder is not None else pd.DataFrame(columns=MARGIN_COLUMNS)
    return model_dir, _final_metrics(trainer, output), margins
