"""DPO with TRL on one subset's pairs, and every pair's implicit reward margin at each recording point.

TRL logs batch means of the reward margin; a data map of training dynamics (Dataset Cartography,
admap/dynamics.py) needs each pair's margin at several points of the training, so `PairMarginRecorder`
scores the whole training set with the policy and the reference model at every epoch end and, with
``train.pair_margins_every``, every N optimizer steps.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from admap.devices import pick_device
from admap.models import materialize_gguf, resolve_generator_model
from admap_experiments.config import TrainOptions
from admap_experiments.memory import (
    ModelShape,
    check_fits,
    estimate_dpo_memory,
    gradient_accumulation,
    lora_parameter_count,
)

logger = logging.getLogger(__name__)

MARGIN_COLUMNS = ["pair_index", "instruction_id", "chosen_id", "rejected_id", "epoch", "step", "margin"]


def policy_checkpoint(model: str) -> str:
    """A path or hub id TRL can load the policy (and its reference copy) from. The offline default
    is a GGUF file, which TRL cannot train; it is dequantised once into a cached checkpoint."""
    path, gguf_file = resolve_generator_model(model)
    return str(materialize_gguf(path, gguf_file)) if gguf_file is not None else path


def dpo_arguments(
    options: TrainOptions, *, output_dir: Path, run_name: str, report_to: list[str], device: str, processes: int = 1
):
    """``trl.DPOConfig`` from the recipe's fields, with the runner's defaults under them: no
    checkpoints mid-run (the final model is saved once), a log line every step, on a CPU no bf16
    (TRL turns it on where the hardware supports it), and the policy loaded in fp32.

    ``bf16`` is mixed precision: fp32 master weights that AdamW updates, matrix products under bf16
    autocast. A policy loaded in bf16 instead would have its updates rounded away (experiments/weights.py).
    ``train.global_batch_size`` sets the gradient accumulation for ``processes`` processes."""
    from trl import DPOConfig

    defaults = {"save_strategy": "no", "logging_steps": 1}
    if device == "cpu":
        defaults |= {"use_cpu": True, "bf16": False}
    fields = defaults | options.dpo | {"output_dir": str(output_dir), "run_name": run_name, "report_to": report_to}
    if options.global_batch_size is not None:
        per_device = fields.get("per_device_train_batch_size", DPOConfig.per_device_train_batch_size)
        fields["gradient_accumulation_steps"] = gradient_accumulation(
            options.global_batch_size, per_device_batch=per_device, processes=processes
        )
    fields["model_init_kwargs"] = {"dtype": "float32"} | (fields.get("model_init_kwargs") or {})
    args = DPOConfig(**fields)
    dtype = str(args.model_init_kwargs["dtype"]).removeprefix("torch.")
    if dtype != "float32" and args.deepspeed_plugin is None:
        raise ValueError(
            f"train.dpo.model_init_kwargs.dtype {dtype!r}: AdamW would update weights held in that dtype with no "
            "fp32 master copy and round most updates away; leave it out (fp32) and set bf16: true for autocast, "
            "or train under DeepSpeed, which keeps fp32 master weights itself"
        )
    return args


def training_memory(options: TrainOptions, args, checkpoint: str, *, state, device: str):
    """The per-GPU memory estimate of this training (experiments/memory.py), logged; on CUDA, with
    ``train.memory_check``, a configuration that cannot fit is refused before any weight loads.
    None under a launch the estimate does not model (DeepSpeed ZeRO-1/2, FSDP)."""
    from accelerate.utils import DistributedType
    from transformers import AutoConfig

    if state.distributed_type == DistributedType.DEEPSPEED:
        zero_stage = state.deepspeed_plugin.zero_stage
    elif state.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        zero_stage = 0
    else:
        zero_stage = None
    if zero_stage not in (0, 3):
        logger.info("no memory estimate for %s (ZeRO stage %s)", state.distributed_type, zero_stage)
        return None
    model_config = AutoConfig.from_pretrained(checkpoint)
    try:
        shape = ModelShape.from_config(model_config)
        lora_params = None
        if options.lora is not None:
            targets = options.lora.get("target_modules", "all-linear")
            lora_params = lora_parameter_count(shape, r=options.lora.get("r", 8), target_modules=targets)
    except (AttributeError, KeyError, ValueError) as error:  # an architecture the estimate does not model
        logger.info("no memory estimate for %s: %s", checkpoint, error)
        return None
    estimate = estimate_dpo_memory(
        shape,
        per_device_batch=args.per_device_train_batch_size,
        # Without max_length a sequence can reach the model's context.
        seq_len=args.max_length or model_config.max_position_embeddings,
        processes=state.num_processes,
        zero_stage=zero_stage,
        lora_params=lora_params,
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        reference="none" if options.lora is not None or args.precompute_ref_log_probs else "model",
    )
    if state.is_main_process:
        logger.info("estimated memory per process:\n%s", estimate.table())
    if options.memory_check and device == "cuda":
        import torch

        properties = torch.cuda.get_device_properties(state.device)
        check_fits(estimate, device_bytes=properties.total_memory, device_name=properties.name)
    return estimate


def reference_in_bf16(trainer) -> None:
    """The frozen reference model in bf16: it only runs forward passes, under autocast whose matrix
    products are bf16 anyway, so fp32 weights would double its memory for nothing. (Under DeepSpeed
    the engine already holds it in the training precision.)"""
    import torch

    if trainer.ref_model is not None and trainer.args.bf16 and not trainer.is_deepspeed_enabled:
        trainer.ref_model.to(torch.bfloat16)


PAIR_ID_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}


def sequence_logps(trainer, model, batch: dict):
    """Summed log-probabilities of each completion under ``model``: ``(chosen, rejected)``, the
    same quantity TRL's DPO loss uses, computed in the training precision (autocast)."""
    import torch
    from trl.trainer.dpo_trainer import disable_gradient_checkpointing

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    seq_len = batch["completion_mask"].size(1) - 1
    with (
        torch.no_grad(),
        disable_gradient_checkpointing(trainer.model, trainer.args.gradient_checkpointing_kwargs),
        trainer.accelerator.autocast(),
    ):
        outputs = model(**_model_inputs(batch), labels=labels, use_cache=False, fused_lm_head=True)
    return outputs.log_probs[:, -seq_len:].sum(dim=1).float().chunk(2, dim=0)


def pair_margins(trainer, *, batch_size: int) -> list[float]:
    """β · ((log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)) for every pair of the
    trainer's training set, in its order. Each process scores its share of the pairs and every
    process gets all margins back; the shares are padded to equal length because under ZeRO-3
    every process must take part in every forward pass."""
    import torch
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader

    dataset = trainer.train_dataset
    accelerator = trainer.accelerator
    keep = [c for c in dataset.column_names if c.endswith("_ids") or c.startswith("ref_")]
    model = trainer.model
    was_training = model.training
    model.eval()
    scored: list[tuple[int, float]] = []
    try:
        with accelerator.split_between_processes(list(range(len(dataset))), apply_padding=True) as positions:
            shard = dataset.select_columns(keep).select(positions)
            loader = DataLoader(shard, batch_size=batch_size, collate_fn=trainer.data_collator)
            margins: list[float] = []
            for batch in loader:
                batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                chosen, rejected = sequence_logps(trainer, model, batch)
                if "ref_chosen_logps" in batch:
                    ref_chosen, ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
                else:
                    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model or model, batch)
                margin = trainer.beta * ((chosen - ref_chosen.float()) - (rejected - ref_rejected.float()))
                margins += margin.cpu().tolist()
            scored = list(zip(positions, margins))
    finally:
        model.train(was_training)
    by_position = dict(gather_object(scored))  # padding repeats a position with the same margin
    return [by_position[position] for position in range(len(dataset))]


def pair_margin_recorder(*, batch_size: int, every: int | None = None):
    """A TrainerCallback that scores every training pair at each epoch end (and at the end of a run
    stopped by ``max_steps`` mid-epoch, which is an epoch end for the Trainer too) and, with ``every``,
    after every ``every``-th optimizer step; a step is recorded once, even when an epoch ends on it.
    Pairs are named by the ids the training set carries: TRL drops pairs whose prompt alone fills
    ``max_length``. Where TRL precomputed the reference log-probabilities (``precompute_ref_log_probs``)
    the training set carries them and only the policy runs."""
    from transformers import TrainerCallback

    class PairMarginRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.trainer = None
            self.rows: list[pd.DataFrame] = []
            self.recorded_steps: set[int] = set()

        def on_step_end(self, args, state, control, **kwargs):
            if every is not None and state.global_step % every == 0:
                self.record(state)

        def on_epoch_end(self, args, state, control, **kwargs):
            self.record(state)

        def record(self, state) -> None:
            if state.global_step in self.recorded_steps:
                return
            self.recorded_steps.add(state.global_step)
            margins = pair_margins(self.trainer, batch_size=batch_size)
            frame = self.trainer.train_dataset.select_columns(PAIR_ID_COLUMNS).to_pandas()
            frame.insert(0, "pair_index", range(len(frame)))
            frame["epoch"] = round(state.epoch, 4)
            frame["step"] = state.global_step
            frame["margin"] = margins
            self.rows.append(frame)
            logger.info(
                "step %d (epoch %.2f): mean pair margin %.4f",
                state.global_step,
                state.epoch,
                float(pd.Series(margins).mean()),
            )

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
    pairs_path: Path, options: TrainOptions, *, out_dir: Path, run_name: str, report_to: list[str]
) -> tuple[Path, dict, pd.DataFrame]:
    """Train DPO on the TRL records in ``pairs_path``. Returns ``(model directory, final metrics,
    pair margins per recording point)`` on every process; only the main process writes the model. With LoRA
    the adapter is saved (``adapter/``) and merged into the base model afterwards, from the saved
    file, so the directory holds a complete model for generation whatever sharded the training."""
    import gc

    import torch
    from accelerate import PartialState
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    device = pick_device(options.device)
    state = PartialState(cpu=device == "cpu")
    checkpoint = policy_checkpoint(options.model)
    args = dpo_arguments(
        options,
        output_dir=out_dir / "trainer",
        run_name=run_name,
        report_to=report_to,
        device=device,
        processes=state.num_processes,
    )
    training_memory(options, args, checkpoint, state=state, device=device)
    dataset = load_dataset("json", data_files=str(pairs_path), split="train")
    held_out = None
    if options.validation_fraction:
        # As LLaMA-Factory's val_size: pairs drawn at random with the training seed.
        split = dataset.train_test_split(test_size=options.validation_fraction, seed=args.seed)
        dataset, held_out = split["train"], split["test"]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_config = None
    if options.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(**({"task_type": "CAUSAL_LM", "target_modules": "all-linear"} | options.lora))
    # The policy is loaded by TRL from its path (in fp32, by model_init_kwargs): each process places
    # its own copy, and under DeepSpeed ZeRO-3 the weights are partitioned as they load.
    trainer = DPOTrainer(
        model=checkpoint,
        args=args,
        train_dataset=dataset,
        eval_dataset=held_out,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    reference_in_bf16(trainer)
    dropped = len(dataset) - len(trainer.train_dataset)
    if dropped:
        logger.warning("%d of %d pairs dropped by TRL: their prompt alone fills max_length", dropped, len(dataset))
    recorder = None
    if options.pair_margins:
        recorder = pair_margin_recorder(batch_size=args.per_device_eval_batch_size, every=options.pair_margins_every)
        recorder.trainer = trainer
        trainer.add_callback(recorder)
    output = trainer.train()
    metrics = _final_metrics(trainer, output)
    metrics |= {"train_pairs": len(trainer.train_dataset), "train_pairs_dropped": dropped}
    if held_out is not None:
        metrics |= trainer.evaluate() | {"validation_pairs": len(trainer.eval_dataset)}
    model_dir = out_dir / "model"
    if peft_config is None:
        trainer.save_model(str(model_dir))  # the main process writes; sharded (DeepSpeed, FSDP) weights gathered
    else:
        adapter_dir = out_dir / "adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.accelerator.is_main_process:
            merge_adapter(adapter_dir, model_dir)
            tokenizer.save_pretrained(model_dir)
        trainer.accelerator.wait_for_everyone()
    margins = recorder.table() if recorder is not None else pd.DataFrame(columns=MARGIN_COLUMNS)
    # The trainer and the recorder refer to each other: without breaking the cycle and collecting,
    # the policy, the reference and the optimizer states stay on the device after this returns.
    if recorder is not None:
        recorder.trainer = None
    del trainer, recorder
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return model_dir, metrics, margins


def merge_adapter(adapter_dir: Path, model_dir: Path) -> Path:
    """The LoRA adapter saved in ``adapter_dir`` merged into its base model, in fp32 on the CPU, saved
    to ``model_dir``: merging the saved adapter, not the trained module, works whatever sharded it."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype="float32")
    model.merge_and_unload().save_pretrained(model_dir)
    return model_dir
