"""Per-GPU memory of DPO training, estimated from the model's shape before anything is loaded.

A 7B policy, its reference and Adam do not fit on one GPU, and whether they fit on eight depends on
the launch mode. `estimate_dpo_memory` adds up what one process holds at its peak;
`check_fits` refuses a configuration that cannot fit and says what would; `gradient_accumulation`
keeps the global batch equal across launch modes.

What is counted (P = the policy's parameters, T = the trainable ones: P, or the LoRA adapters; N =
processes; t = tokens per micro-batch = 2 x per-device batch x sequence length, since DPO runs the
chosen and the rejected completion of every pair through the policy; every sequence is taken at
full length, as a batch padded to ``max_length`` would be):

* **Plain data parallel (ZeRO stage 0: one GPU, or DDP)**, ``bf16`` meaning fp32 master weights
  under bf16 autocast (HF Trainer ``bf16=True`` with an fp32-loaded model): weights 4 B/param (the
  frozen base too, under LoRA, plus the adapters), gradients 4 B per trainable parameter, Adam's
  ``exp_avg`` and ``exp_avg_sq`` 8 B per trainable parameter. Autocast caches a bf16 copy of every
  trainable fp32 weight that a matmul reads (``weight_casts``, 2 B per such parameter) until the
  policy's forward leaves the autocast region; the fused LM head casts its weight tile by tile, so
  the head is not in that cache. Under DDP (N > 1) the gradient buckets are a second copy of the
  gradients (``buffers``, 4 B per trainable parameter), since neither Accelerate nor the HF Trainer
  sets ``gradient_as_bucket_view``.
* **DeepSpeed ZeRO-3** with bf16 (as ``experiments/configs/accelerate/zero3.yaml`` sets it): bf16
  parameters 2 B, bf16 gradients 2 B, and the fp32 master copy with Adam 12 B per trainable
  parameter, all divided by N; the reference model partitioned the same way (2 B/param / N). The
  ``buffers`` are the gathered working set: two layers' bf16 parameters (the layer computing and the
  one prefetched) and the LM head gathered for the loss. DeepSpeed's ``stage3_max_live_parameters``
  (1e9 by default) caps the gathered set at 2 GB, and the fp32 gradient partition it builds for the
  optimizer step (4 B per trainable parameter / N, transient) is left out.
* **Reference model**: ``reference="model"`` is a frozen copy in bf16 (2 B/param; fp32 when
  ``bf16=False``); ``"none"`` is LoRA with the adapter disabled or ``precompute_ref_log_probs``.
  Its forward runs under no_grad after the policy's, so its activations (one layer at a time) stay
  under the policy's backward working set and are not added.
* **Activations**, per layer per token, counted from the tensors each op of a Llama/Mistral
  decoder layer saves for backward (the method of Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", whose GPT layer saves 34·h + 5·a·s bytes per token;
  a Llama layer has RMSNorm in fp32, grouped-query attention and a SwiGLU MLP, so its count differs;
  h hidden, q = heads x head_dim, k = kv heads x head_dim, i intermediate, a heads, s sequence):

  - bf16 autocast over fp32 weights: 26·h + 4·q + 4·k + 8·i bytes (the norms keep fp32 input and
    output, and autocast saves a separate bf16 copy of the norm output for each of the q, k, v,
    gate and up projections);
  - pure bf16 (ZeRO-3): 16·h + 4·q + 4·k + 8·i;
  - fp32 (``bf16=False``): 24·h + 8·q + 8·k + 16·i;
  - eager attention adds 7·a·s bytes (fp32 softmax 4, its bf16 copy 2, dropout mask 1; Korthikanti
    et al. count 5·a·s); SDPA and flash attention save only the output and the log-sum-exp, so
    there is no s² term.

  These counts match the saved tensors of transformers' Mistral layer (measured with
  ``torch.autograd.graph.saved_tensors_hooks``; tests/test_memory_estimate.py checks them).
  With gradient checkpointing every layer keeps its input, the residual stream: fp32 (4 B) under
  autocast over fp32 weights, because the embedding output is fp32 and every residual add
  promotes to it, bf16 (2 B) under ZeRO-3. The backward adds one recomputed layer and the residual
  stream's gradient in and out. Without checkpointing every layer keeps its full count.
* **LM head**: TRL 1.16's DPO trainer projects the LM head in tiles (``add_fused_lm_head``, 4096
  tokens x 32768 vocabulary entries at a time) and never materialises the (t, vocab) logits; what
  remains is the final hidden states, their fp32 gradient, the head's fp32 weight gradient (full
  fine-tuning) and one tile. With full logits (``fused_lm_head=False``: older TRL, or a forward
  outside TRL's head) the logits would dominate the activations at a 32k vocabulary: bf16 logits
  plus fp32 log-probabilities and their gradient, 10 B x t x vocab = 10.5 GB at t = 32768.

The total is the sum of the components. The autocast cache (end of the forward) and the backward
working set (one layer, the head) do not peak together, so the sum over-counts by the smaller of
the two. Not counted: the CUDA context (0.5-1 GiB), NCCL buffers, allocator fragmentation (often
5-15 %), the tokenised data set; `MemoryEstimate.fits` keeps ``headroom`` of the device free for
them. Expect the estimate to land within about 15 % of a measured peak
(``torch.cuda.max_memory_allocated``) on the components it counts; it is arithmetic and has not
yet been checked against a run on a GPU.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal

GIB = 2**30
FP32_BYTES = 4
BF16_BYTES = 2
ADAM_STATE_BYTES = 8  # exp_avg and exp_avg_sq, fp32
FP32_MASTER_BYTES = 4  # the optimizer's fp32 copy of bf16 parameters (ZeRO-3)
DEFAULT_HEADROOM = 0.10  # share of the device left for the CUDA context, NCCL and fragmentation
ZERO3_LIVE_LAYERS = 2  # the layer computing and the one prefetched
# trl.kernels.chunked_logprob: the fused LM head's tile, tokens x vocabulary entries.
FUSED_HEAD_TOKEN_TILE = 4096
FUSED_HEAD_VOCAB_TILE = 32768
EAGER_ATTENTION_BYTES = 7  # per head, key and query token: fp32 softmax, its 16-bit copy, dropout mask
FULL_LOGITS_BYTES = BF16_BYTES + 2 * FP32_BYTES  # bf16 logits, fp32 log-probabilities and their gradient
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "flash_attention_2", "eager")
COMPONENTS = ("weights", "gradients", "optimizer", "reference", "weight_casts", "buffers", "activations")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a Llama/Mistral-like decoder."""

    n_params: int
    n_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int | None = None  # None: hidden_size // n_heads
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("n_params", "n_layers", "hidden_size", "intermediate_size", "vocab_size", "n_heads", "n_kv_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelShape.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"ModelShape: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """The shape of a transformers ``PretrainedConfig`` (Llama, Mistral and their relatives);
        ``n_params`` is counted from it: embeddings, per layer q/k/v/o and gate/up/down
        projections with the biases the config asks for (``attention_bias``, ``mlp_bias``) and two
        RMSNorm weights, the final norm, and an LM head unless the embeddings are tied."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        required = ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "num_attention_heads")
        missing = [name for name in required if getattr(text, name, None) is None]
        if missing:
            raise ValueError(f"{type(config).__name__} is not a Llama/Mistral-like decoder config: no {missing}")
        hidden, heads = text.hidden_size, text.num_attention_heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        head_dim = getattr(text, "head_dim", None) or hidden // heads
        intermediate, vocab, layers = text.intermediate_size, text.vocab_size, text.num_hidden_layers
        tied = bool(getattr(text, "tie_word_embeddings", False))
        q_size, kv_size = heads * head_dim, kv_heads * head_dim
        attention = 2 * hidden * q_size + 2 * hidden * kv_size
        if getattr(text, "attention_bias", False):
            attention += q_size + 2 * kv_size + hidden  # q, k, v and o biases
        mlp = 3 * hidden * intermediate + (2 * intermediate + hidden if getattr(text, "mlp_bias", False) else 0)
        layer = attention + mlp + 2 * hidden
        n_params = vocab * hidden * (1 if tied else 2) + layers * layer + hidden
        return cls(
            n_params=n_params,
            n_layers=layers,
            hidden_size=hidden,
            intermediate_size=intermediate,
            vocab_size=vocab,
            n_heads=heads,
            n_kv_heads=kv_heads,
            head_dim=head_dim,
            tie_word_embeddings=tied,
        )

    @property
    def q_size(self) -> int:
        return self.n_heads * (self.head_dim or self.hidden_size // self.n_heads)

    @property
    def kv_size(self) -> int:
        return self.n_kv_heads * (self.head_dim or self.hidden_size // self.n_heads)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def layer_params(self) -> int:
        """One decoder layer's parameters: what is left of ``n_params`` once the embeddings, the
        LM head and the final norm are taken out."""
        outside = self.embedding_params * (1 if self.tie_word_embeddings else 2) + self.hidden_size
        return (self.n_params - outside) // self.n_layers

    @property
    def layer_matmul_params(self) -> int:
        """One layer's projection weights: the parameters autocast casts to bf16."""
        attention = 2 * self.hidden_size * self.q_size + 2 * self.hidden_size * self.kv_size
        return attention + 3 * self.hidden_size * self.intermediate_size


def lora_parameter_count(shape: ModelShape, *, r: int, target_modules: str | tuple[str, ...] = "all-linear") -> int:
    """Trainable parameters of a rank-``r`` LoRA adapter on ``target_modules`` of every layer:
    r x (fan-in + fan-out) per adapted matrix. "all-linear" is what peft picks on a Llama/Mistral
    model: every projection, not the LM head."""
    if target_modules == "all-linear":
        target_modules = LORA_TARGET_MODULES
    h, q, kv, i = shape.hidden_size, shape.q_size, shape.kv_size, shape.intermediate_size
    fans = {
        "q_proj": h + q,
        "k_proj": h + kv,
        "v_proj": h + kv,
        "o_proj": q + h,
        "gate_proj": h + i,
        "up_proj": h + i,
        "down_proj": i + h,
    }
    unknown = [name for name in target_modules if name not in fans]
    if unknown:
        raise ValueError(f"lora target_modules: {unknown} are not projections of a Llama/Mistral layer ({list(fans)})")
    if r < 1:
        raise ValueError(f"lora r must be >= 1, got {r}")
    return shape.n_layers * r * sum(fans[name] for name in target_modules)


@dataclass
class MemoryEstimate:
    """Bytes one process holds at its peak, by component; ``shape`` and ``setup`` are the inputs,
    so that `check_fits` can try other settings."""

    weights: int
    gradients: int
    optimizer: int
    reference: int
    weight_casts: int
    buffers: int
    activations: int
    shape: ModelShape
    setup: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in COMPONENTS)

    def components(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COMPONENTS}

    def fits(self, device_bytes: int, *, headroom: float = DEFAULT_HEADROOM) -> bool:
        """Whether the total fits in ``device_bytes`` with a ``headroom`` share of it left free."""
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        return self.total <= device_bytes * (1 - headroom)

    def table(self) -> str:
        """A GiB breakdown, largest component first, with what each one assumes."""
        notes = _component_notes(self.setup)
        rows = sorted(self.components().items(), key=lambda item: -item[1])
        width = max(len(name) for name in COMPONENTS)
        lines = [f"DPO memory per GPU: {describe_setup(self.shape, self.setup)}"]
        lines += [f"  {name:<{width}}  {size / GIB:7.1f} GiB  {notes[name]}" for name, size in rows]
        lines.append(f"  {'total':<{width}}  {self.total / GIB:7.1f} GiB")
        return "\n".join(lines)


def describe_setup(shape: ModelShape, setup: dict[str, Any]) -> str:
    gpus = f"{setup['processes']} GPU" + ("s" if setup["processes"] > 1 else "")
    mode = f"ZeRO-3 on {gpus}" if setup["zero_stage"] == 3 else (f"DDP on {gpus}" if setup["processes"] > 1 else gpus)
    training = "full fine-tuning" if setup["lora_params"] is None else f"LoRA ({setup['lora_params'] / 1e6:.1f}M)"
    return (
        f"{shape.n_params / 1e9:.2f}B params, {training}, {mode}, "
        f"{setup['per_device_batch']} pairs x {setup['seq_len']} tokens per device, "
        f"{'bf16' if setup['bf16'] else 'fp32'}, "
        f"{'gradient checkpointing' if setup['gradient_checkpointing'] else 'no checkpointing'}, "
        f"reference: {setup['reference']}"
    )


def _component_notes(setup: dict[str, Any]) -> dict[str, str]:
    zero3 = setup["zero_stage"] == 3
    split = f" / {setup['processes']}" if zero3 else ""
    if zero3:
        weights = f"bf16 parameters{split}" if setup["bf16"] else f"fp32 parameters{split}"
        optimizer = f"fp32 master copy + Adam m, v{split}" if setup["bf16"] else f"Adam m, v{split}"
        buffers = "gathered working set: two layers and the LM head"
    else:
        weights = "fp32 master weights" + (" (frozen base + adapters)" if setup["lora_params"] is not None else "")
        optimizer = "Adam m, v (fp32)"
        buffers = "DDP gradient buckets (a second gradient copy)" if setup["processes"] > 1 else "none (one process)"
    checkpointing = "layer inputs kept" if setup["gradient_checkpointing"] else "every layer's activations"
    return {
        "weights": weights,
        "gradients": ("bf16" if zero3 and setup["bf16"] else "fp32") + f" gradients of trainable parameters{split}",
        "optimizer": optimizer,
        "reference": {"model": f"frozen reference model{split}", "none": "none (adapter disabled or precomputed)"}[
            setup["reference"]
        ],
        "weight_casts": "bf16 copies autocast caches during the forward" if not zero3 and setup["bf16"] else "none",
        "buffers": buffers,
        "activations": f"{checkpointing}, one layer's backward, LM head",
    }


def estimate_dpo_memory(
    shape: ModelShape,
    *,
    per_device_batch: int,
    seq_len: int,
    processes: int = 1,
    zero_stage: Literal[0, 3] = 0,
    lora_params: int | None = None,
    bf16: bool = True,
    gradient_checkpointing: bool = True,
    reference: Literal["model", "none"] = "model",
    attention: str = "sdpa",
    fused_lm_head: bool = True,
) -> MemoryEstimate:
    """Peak bytes per process of DPO training (see the module docstring for every assumption).

    ``per_device_batch`` pairs (2 x as many sequences) of ``seq_len`` tokens per micro-batch;
    ``processes`` GPUs; ``zero_stage`` 0 (one GPU or DDP) or 3 (DeepSpeed ZeRO-3); ``lora_params``
    the trainable adapter parameters (`lora_parameter_count`), None for full fine-tuning; ``bf16``
    mixed precision (fp32 master weights); ``reference`` "model" for a frozen copy, "none" for
    LoRA's disabled adapter or precomputed reference log-probabilities; ``attention`` the
    transformers attention implementation; ``fused_lm_head`` False for full logits.
    """
    for name, value in (("per_device_batch", per_device_batch), ("seq_len", seq_len), ("processes", processes)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if zero_stage not in (0, 3):
        raise ValueError(f"zero_stage must be 0 or 3 (the stages this estimate models), got {zero_stage}")
    if reference not in ("model", "none"):
        raise ValueError(f"reference must be 'model' or 'none', got {reference!r}")
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {attention!r}")
    if lora_params is not None and not 0 < lora_params < shape.n_params:
        raise ValueError(f"lora_params must be in [1, {shape.n_params}) (the model's parameters), got {lora_params}")
    setup = {
        "per_device_batch": per_device_batch,
        "seq_len": seq_len,
        "processes": processes,
        "zero_stage": zero_stage,
        "lora_params": lora_params,
        "bf16": bf16,
        "gradient_checkpointing": gradient_checkpointing,
        "reference": reference,
        "attention": attention,
        "fused_lm_head": fused_lm_head,
    }
    adapters = lora_params or 0
    trainable = shape.n_params if lora_params is None else lora_params
    if zero_stage == 3:
        # DeepSpeed holds the module parameters in bf16 and the optimizer's fp32 master copy apart.
        param_bytes = BF16_BYTES if bf16 else FP32_BYTES
        master_bytes = FP32_MASTER_BYTES if bf16 else 0
        weights = param_bytes * (shape.n_params + adapters) // processes
        gradients = param_bytes * trainable // processes
        optimizer = (master_bytes + ADAM_STATE_BYTES) * trainable // processes
        reference_bytes = param_bytes * shape.n_params // processes
        buffers = param_bytes * (ZERO3_LIVE_LAYERS * shape.layer_params + shape.embedding_params)
        weight_casts = 0
        layer_mode = "bf16" if bf16 else "fp32"
    else:
        weights = FP32_BYTES * (shape.n_params + adapters)
        gradients = FP32_BYTES * trainable
        optimizer = ADAM_STATE_BYTES * trainable
        reference_bytes = (BF16_BYTES if bf16 else FP32_BYTES) * shape.n_params
        buffers = FP32_BYTES * trainable if processes > 1 else 0
        cast_params = shape.n_layers * shape.layer_matmul_params if lora_params is None else lora_params
        weight_casts = BF16_BYTES * cast_params if bf16 else 0
        layer_mode = "autocast" if bf16 else "fp32"
    if reference == "none":
        reference_bytes = 0
    activations = _activation_bytes(
        shape,
        sequences=2 * per_device_batch,
        seq_len=seq_len,
        layer_mode=layer_mode,
        gradient_checkpointing=gradient_checkpointing,
        attention=attention,
        fused_lm_head=fused_lm_head,
        head_trainable=lora_params is None,
    )
    return MemoryEstimate(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        reference=reference_bytes,
        weight_casts=weight_casts,
        buffers=buffers,
        activations=activations,
        shape=shape,
        setup=setup,
    )


def layer_activation_bytes(shape: ModelShape, *, tokens: int, seq_len: int, layer_mode: str, attention: str) -> int:
    """Bytes one decoder layer saves for backward over ``tokens`` tokens (sequences of
    ``seq_len``): ``layer_mode`` "autocast" (bf16 autocast over fp32 weights), "bf16" or "fp32"."""
    h, q, kv, i = shape.hidden_size, shape.q_size, shape.kv_size, shape.intermediate_size
    per_token = {
        "autocast": 26 * h + 4 * q + 4 * kv + 8 * i,
        "bf16": 16 * h + 4 * q + 4 * kv + 8 * i,
        "fp32": 24 * h + 8 * q + 8 * kv + 16 * i,
    }[layer_mode]
    if attention == "eager":
        per_token += EAGER_ATTENTION_BYTES * shape.n_heads * seq_len
    return tokens * per_token


def _activation_bytes(
    shape: ModelShape,
    *,
    sequences: int,
    seq_len: int,
    layer_mode: str,
    gradient_checkpointing: bool,
    attention: str,
    fused_lm_head: bool,
    head_trainable: bool,
) -> int:
    tokens = sequences * seq_len
    # The residual stream is fp32 under autocast over fp32 weights (the embedding output is fp32).
    residual_bytes = BF16_BYTES if layer_mode == "bf16" else FP32_BYTES
    hidden_states = tokens * shape.hidden_size * residual_bytes
    layer = layer_activation_bytes(shape, tokens=tokens, seq_len=seq_len, layer_mode=layer_mode, attention=attention)
    if gradient_checkpointing:
        kept = shape.n_layers * hidden_states + layer  # every layer's input; one layer recomputed in backward
    else:
        kept = shape.n_layers * layer
    residual_gradients = 2 * tokens * shape.hidden_size * residual_bytes  # flowing into and out of a layer
    compute_bytes = FP32_BYTES if layer_mode == "fp32" else BF16_BYTES
    if fused_lm_head:
        tile = min(tokens, FUSED_HEAD_TOKEN_TILE) * min(shape.vocab_size, FUSED_HEAD_VOCAB_TILE) * compute_bytes
        head_weight_gradient = FP32_BYTES * shape.embedding_params if head_trainable else 0
        # the final norm's output kept for the head, and its fp32 gradient
        head = hidden_states + tokens * shape.hidden_size * FP32_BYTES + head_weight_gradient + tile
    else:
        logits_bytes = FP32_BYTES * 3 if layer_mode == "fp32" else FULL_LOGITS_BYTES
        head = hidden_states + tokens * shape.vocab_size * logits_bytes
    return kept + residual_gradients + head


def check_fits(estimate: MemoryEstimate, *, device_bytes: int, device_name: str) -> None:
    """Raise ValueError when ``estimate`` does not fit on ``device_name`` (``device_bytes``): the
    message names the total, the largest components and the settings that would fit."""
    if estimate.fits(device_bytes):
        return
    largest = sorted(estimate.components().items(), key=lambda item: -item[1])[:3]
    parts = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in largest)
    usable = device_bytes * (1 - DEFAULT_HEADROOM)
    options = _what_would_fit(estimate, device_bytes)
    advice = "; ".join(options) if options else "none of ZeRO-3 on up to 8 GPUs, LoRA or batch 1 is estimated to fit"
    raise ValueError(
        f"DPO training needs about {estimate.total / GIB:.1f} GiB per GPU, more than the {usable / GIB:.1f} GiB "
        f"usable on {device_name} ({device_bytes / GIB:.1f} GiB, {DEFAULT_HEADROOM:.0%} kept free) "
        f"[{describe_setup(estimate.shape, estimate.setup)}]. Largest: {parts}. "
        f"Estimated to fit: {advice}. (train.memory_check: false skips this check.)"
    )


def _what_would_fit(estimate: MemoryEstimate, device_bytes: int) -> list[str]:
    """Each kind of change, at its smallest step that the estimate says would fit."""
    shape, setup = estimate.shape, estimate.setup

    def fits(**changes: Any) -> bool:
        return estimate_dpo_memory(shape, **(setup | changes)).fits(device_bytes)

    options = []
    if setup["zero_stage"] == 0:
        gpus = next((n for n in (2, 4, 8) if n >= setup["processes"] and fits(zero_stage=3, processes=n)), None)
        if gpus is not None:
            options.append(
                f"ZeRO-3 across {gpus} GPUs (accelerate launch --config_file experiments/configs/accelerate/zero3.yaml "
                f"--num_processes {gpus})"
            )
    if setup["lora_params"] is None:
        lora = lora_parameter_count(shape, r=16)
        if fits(lora_params=lora, reference="none"):
            options.append("LoRA r=16 on every projection (train.lora: {r: 16, ...}; no reference copy)")
    if not setup["gradient_checkpointing"] and fits(gradient_checkpointing=True):
        options.append("gradient checkpointing (train.dpo.gradient_checkpointing: true)")
    smaller = [b for b in range(setup["per_device_batch"] - 1, 0, -1) if setup["per_device_batch"] % b == 0]
    batch = next((b for b in smaller if fits(per_device_batch=b)), None)
    if batch is not None:
        options.append(
            f"per_device_train_batch_size {batch} with {setup['per_device_batch'] // batch}x the gradient "
            "accumulation (train.global_batch_size keeps the global batch)"
        )
    return options


def gradient_accumulation(global_batch: int, *, per_device_batch: int, processes: int) -> int:
    """Accumulation steps that make ``per_device_batch`` x ``processes`` x steps = ``global_batch``;
    ValueError, naming batch sizes that would work, when it does not divide."""
    sizes = {"global_batch": global_batch, "per_device_batch": per_device_batch, "processes": processes}
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    step = per_device_batch * processes
    if global_batch % step == 0:
        return global_batch // step
    per_process = [b for b in range(1, global_batch // processes + 1) if global_batch % (b * processes) == 0]
    lower, upper = (global_batch // step) * step, (global_batch // step + 1) * step
    nearest = [b for b in (lower, upper) if b > 0]
    raise ValueError(
        f"global batch {global_batch} is not a multiple of per-device batch {per_device_batch} x {processes} "
        f"process(es) = {step}: with {processes} process(es) use a per-device batch in {per_process}, "
        f"or a global batch of {' or '.join(map(str, nearest))}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m admap_experiments.memory", description="Per-GPU memory estimate of DPO training."
    )
    parser.add_argument("model", help="hub id or local folder of the policy (only its config.json is read)")
    parser.add_argument("--per-device-batch", type=int, default=8, help="pairs per device per micro-batch")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence (DPO max_length)")
    parser.add_argument("--processes", type=int, default=1, help="GPUs")
    parser.add_argument("--zero-stage", type=int, choices=(0, 3), default=0, help="0: one GPU or DDP; 3: ZeRO-3")
    parser.add_argument("--lora-r", type=int, default=None, help="LoRA rank on every projection (default: full)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 mixed precision")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--reference", choices=("model", "none"), default=None, help="default: none with LoRA")
    parser.add_argument("--device-gib", type=float, nargs="*", default=[80, 140], help="GPU sizes to check")
    args = parser.parse_args(argv)
    from transformers import AutoConfig

    shape = ModelShape.from_config(AutoConfig.from_pretrained(args.model))
    lora_params = None if args.lora_r is None else lora_parameter_count(shape, r=args.lora_r)
    estimate = estimate_dpo_memory(
        shape,
        per_device_batch=args.per_device_batch,
        seq_len=args.seq_len,
        processes=args.processes,
        zero_stage=args.zero_stage,
        lora_params=lora_params,
        bf16=not args.fp32,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        reference=args.reference or ("model" if lora_params is None else "none"),
    )
    print(estimate.table())
    for gib in args.device_gib:
        verdict = "fits" if estimate.fits(int(gib * GIB)) else "does not fit"
        print(f"  {gib:g} GiB GPU: {verdict} ({DEFAULT_HEADROOM:.0%} kept free)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
