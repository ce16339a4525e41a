"""The per-GPU memory estimate of DPO: zephyr-7b's shape against arithmetic written out by hand, the
four launch modes on 80 GB and 141 GB cards, the per-layer activation counts against the tensors a
real (tiny) Mistral layer saves for backward, and the global batch kept equal across launch modes."""

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from admap_experiments.memory import (  # noqa: E402
    GIB,
    ModelShape,
    check_fits,
    estimate_dpo_memory,
    gradient_accumulation,
    layer_activation_bytes,
    lora_parameter_count,
)

GB = 10**9
H200_BYTES = 141 * GB  # the card's nominal size; about 140 GiB are visible to CUDA
A100_80GB_BYTES = 80 * GIB

# zephyr-7b-sft-full is Mistral-7B: hidden 4096, 32 layers, MLP 14336, vocabulary 32000, 32 query
# heads and 8 key/value heads of 128, untied embeddings.
H, LAYERS, MLP, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 4096, 32, 14336, 32000, 32, 8, 128
EMBEDDING = VOCAB * H  # 131,072,000
LAYER_MATMULS = H * H + H * 1024 + H * 1024 + H * H + 3 * H * MLP  # q, k, v, o; gate, up, down: 218,103,808
LAYER = LAYER_MATMULS + 2 * H  # plus two RMSNorm weights: 218,112,000
N_PARAMS = EMBEDDING + LAYERS * LAYER + H + EMBEDDING  # embeddings, layers, final norm, LM head: 7,241,732,096

# The paper recipe's micro-batch: 8 pairs of 2048 tokens, chosen and rejected: 32768 sequences' tokens.
PAIRS, SEQ = 8, 2048
TOKENS = 2 * PAIRS * SEQ


@pytest.fixture(scope="module")
def zephyr():
    config = transformers.MistralConfig(
        hidden_size=H,
        num_hidden_layers=LAYERS,
        intermediate_size=MLP,
        vocab_size=VOCAB,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        tie_word_embeddings=False,
    )
    return ModelShape.from_config(config)


def test_zephyr_shape_is_counted_from_its_config(zephyr):
    assert zephyr.n_params == N_PARAMS
    assert 7.24e9 < zephyr.n_params < 7.25e9
    assert (zephyr.n_layers, zephyr.hidden_size, zephyr.intermediate_size) == (LAYERS, H, MLP)
    assert (zephyr.vocab_size, zephyr.n_heads, zephyr.n_kv_heads) == (VOCAB, HEADS, KV_HEADS)
    assert zephyr.layer_params == LAYER and zephyr.layer_matmul_params == LAYER_MATMULS


def test_tied_embeddings_are_counted_once():
    config = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, vocab_size=100, num_attention_heads=4)
    untied = ModelShape.from_config(transformers.LlamaConfig(**config, tie_word_embeddings=False))
    tied = ModelShape.from_config(transformers.LlamaConfig(**config, tie_word_embeddings=True))
    assert untied.n_params - tied.n_params == 100 * 64
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config, tie_word_embeddings=True))
    assert tied.n_params == sum(p.numel() for p in model.parameters())


def test_one_gpu_full_fine_tuning_does_not_fit_an_h200(zephyr):
    estimate = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ)
    # fp32 master weights under bf16 autocast: 4 B weights, 4 B gradients, 8 B Adam per parameter
    assert estimate.weights == 4 * N_PARAMS
    assert estimate.gradients == 4 * N_PARAMS
    assert estimate.optimizer == 8 * N_PARAMS
    assert estimate.reference == 2 * N_PARAMS  # bf16 frozen copy
    assert estimate.weight_casts == 2 * LAYERS * LAYER_MATMULS  # autocast's bf16 copies of the projections
    assert estimate.buffers == 0  # one process: no DDP buckets
    # Activations: every layer's fp32 input (the residual stream under autocast over fp32 weights),
    # one recomputed layer (26h + 4q + 4kv + 8i bytes per token), the residual gradient in and out
    # (fp32), and the fused LM head: final hidden states and their fp32 gradient, the head's fp32
    # weight gradient and one bf16 tile of 4096 tokens x 32000 vocabulary entries.
    checkpoints = LAYERS * TOKENS * H * 4
    one_layer = TOKENS * (26 * H + 4 * H + 4 * 1024 + 8 * MLP)
    residual_gradient = 2 * TOKENS * H * 4
    head = TOKENS * H * 4 + TOKENS * H * 4 + 4 * EMBEDDING + 4096 * VOCAB * 2
    assert estimate.activations == checkpoints + one_layer + residual_gradient + head
    # 18 B/param of states alone is 130 GB; the layer inputs add 17 GB.
    assert estimate.total > H200_BYTES
    assert not estimate.fits(H200_BYTES, headroom=0)


def test_eight_gpu_ddp_does_not_fit_80gb(zephyr):
    one_gpu = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ)
    ddp = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ, processes=8)
    # DDP replicates everything and adds gradient buckets: a second fp32 copy of the gradients.
    assert ddp.buffers == 4 * N_PARAMS
    assert ddp.total == one_gpu.total + 4 * N_PARAMS
    assert not ddp.fits(A100_80GB_BYTES, headroom=0)
    assert not ddp.fits(H200_BYTES, headroom=0)


def test_eight_gpu_zero3_fits_80gb(zephyr):
    estimate = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ, processes=8, zero_stage=3)
    # bf16 parameters 2, bf16 gradients 2, fp32 master + Adam 12 B per parameter, over 8 GPUs
    assert estimate.weights == 2 * N_PARAMS // 8
    assert estimate.gradients == 2 * N_PARAMS // 8
    assert estimate.optimizer == 12 * N_PARAMS // 8
    assert estimate.reference == 2 * N_PARAMS // 8
    assert estimate.weight_casts == 0
    assert estimate.buffers == 2 * (2 * LAYER + EMBEDDING)  # two gathered layers and the LM head, bf16
    # The residual stream is bf16 under DeepSpeed's bf16 parameters: 2 B per layer input.
    checkpoints = LAYERS * TOKENS * H * 2
    assert checkpoints < estimate.activations < checkpoints + 12 * GIB
    assert estimate.total < 40 * GIB
    assert estimate.fits(A100_80GB_BYTES)
    check_fits(estimate, device_bytes=A100_80GB_BYTES, device_name="A100 80GB")


def test_one_gpu_lora_fits_80gb(zephyr):
    # r=16 on q, k, v, o, gate, up, down: 16 x (fan-in + fan-out) per matrix, per layer.
    per_layer = 16 * ((H + H) + (H + 1024) + (H + 1024) + (H + H) + 3 * (H + MLP))
    lora = lora_parameter_count(zephyr, r=16)
    assert lora == LAYERS * per_layer == 41_943_040
    estimate = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ, lora_params=lora, reference="none")
    assert estimate.weights == 4 * (N_PARAMS + lora)  # the frozen base stays fp32
    assert estimate.gradients == 4 * lora and estimate.optimizer == 8 * lora
    assert estimate.reference == 0
    assert estimate.total < 60 * GIB
    assert estimate.fits(A100_80GB_BYTES)


def test_gradient_checkpointing_and_the_fused_head_save_what_they_should(zephyr):
    base = dict(per_device_batch=PAIRS, seq_len=SEQ, processes=8, zero_stage=3)
    with_checkpoints = estimate_dpo_memory(zephyr, **base)
    without = estimate_dpo_memory(zephyr, **base, gradient_checkpointing=False)
    # Without checkpointing every layer keeps its 16h + 4q + 4kv + 8i bytes per token (pure bf16).
    assert without.activations > LAYERS * TOKENS * (16 * H + 4 * H + 4 * 1024 + 8 * MLP)
    assert not without.fits(A100_80GB_BYTES)
    full_logits = estimate_dpo_memory(zephyr, **base, fused_lm_head=False)
    # bf16 logits, fp32 log-probabilities and their gradient: 10 B per token and vocabulary entry.
    assert full_logits.activations - with_checkpoints.activations > 10 * TOKENS * VOCAB - 2 * GIB
    eager = estimate_dpo_memory(zephyr, **base, attention="eager")
    assert eager.activations - with_checkpoints.activations == 7 * HEADS * SEQ * TOKENS


def test_check_fits_names_the_total_the_largest_parts_and_what_would_fit(zephyr):
    estimate = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ, processes=8)
    with pytest.raises(ValueError) as raised:
        check_fits(estimate, device_bytes=A100_80GB_BYTES, device_name="A100 80GB")
    message = str(raised.value)
    assert f"{estimate.total / GIB:.1f} GiB" in message and "A100 80GB" in message
    assert "optimizer" in message and "weights" in message
    assert "ZeRO-3 across 8 GPUs" in message and "zero3.yaml" in message
    assert "LoRA" in message


def test_check_fits_suggests_a_smaller_batch_when_only_activations_overflow(zephyr):
    lora = lora_parameter_count(zephyr, r=16)
    estimate = estimate_dpo_memory(zephyr, per_device_batch=16, seq_len=4096, lora_params=lora, reference="none")
    with pytest.raises(ValueError, match="per_device_train_batch_size .* gradient accumulation"):
        check_fits(estimate, device_bytes=A100_80GB_BYTES, device_name="A100 80GB")


def test_table_lists_every_component_in_gib(zephyr):
    table = estimate_dpo_memory(zephyr, per_device_batch=PAIRS, seq_len=SEQ).table()
    for name in ("weights", "gradients", "optimizer", "reference", "buffers", "activations", "total"):
        assert name in table
    assert f"{8 * N_PARAMS / GIB:.1f} GiB" in table  # Adam


@pytest.mark.parametrize(
    ("processes", "expected"),
    [(1, 16), (2, 8), (8, 2)],
)
def test_gradient_accumulation_keeps_the_global_batch(processes, expected):
    assert gradient_accumulation(128, per_device_batch=8, processes=processes) == expected


def test_gradient_accumulation_refuses_a_batch_that_does_not_divide():
    with pytest.raises(ValueError) as raised:
        gradient_accumulation(128, per_device_batch=6, processes=8)
    message = str(raised.value)
    assert "128" in message and "48" in message  # 6 x 8
    assert "[1, 2, 4, 8, 16]" in message  # per-device batches that divide 128 / 8
    assert "96 or 144" in message


def test_train_options_refuse_a_global_batch_and_an_accumulation_at_once():
    pytest.importorskip("trl")
    from admap.config import build
    from admap_experiments.config import ExperimentConfig

    dpo = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2}
    both = {"train": {"global_batch_size": 128, "dpo": dpo}}
    with pytest.raises(ValueError, match="global_batch_size .*gradient_accumulation_steps .* both set"):
        build(ExperimentConfig, both, source="test")
    with pytest.raises(ValueError, match="global_batch_size must be >= 1"):
        build(ExperimentConfig, {"train": {"global_batch_size": 0}}, source="test")
    config = build(ExperimentConfig, {"train": {"global_batch_size": 128}}, source="test")
    assert config.train.global_batch_size == 128 and config.train.memory_check


def _saved_bytes_per_token(mode: str, attention: str, *, seq_len: int) -> float:
    """Bytes one tiny Mistral layer saves for backward per token, its weights (and autocast's bf16
    copies of them) left out."""
    config = transformers.MistralConfig(
        hidden_size=256,
        intermediate_size=896,
        num_hidden_layers=1,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=64,
        attn_implementation=attention,
    )
    model = transformers.MistralForCausalLM(config).to(torch.bfloat16 if mode == "bf16" else torch.float32).train()
    layer = model.model.layers[0]
    batch = 2
    hidden = model.model.embed_tokens(torch.randint(0, 64, (batch, seq_len))).detach().requires_grad_()
    position_embeddings = model.model.rotary_emb(hidden, torch.arange(seq_len)[None])
    weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        is_weight_cast = tensor.dim() == 2 and {*tensor.shape} in [{*p.shape} for p in layer.parameters()]
        if storage.data_ptr() not in weights and not (mode == "autocast" and is_weight_cast):
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            layer(hidden, position_embeddings=position_embeddings)
    return sum(saved.values()) / (batch * seq_len)


@pytest.mark.parametrize("mode", ["autocast", "bf16", "fp32"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_layer_activation_count_matches_what_a_mistral_layer_saves(mode, attention):
    seq_len = 80  # not a multiple of the hidden size, so no activation has a weight's shape
    measured = _saved_bytes_per_token(mode, attention, seq_len=seq_len)
    shape = ModelShape(
        n_params=10**6, n_layers=1, hidden_size=256, intermediate_size=896, vocab_size=64, n_heads=8, n_kv_heads=2
    )
    counted = layer_activation_bytes(shape, tokens=1, seq_len=seq_len, layer_mode=mode, attention=attention)
    assert counted == pytest.approx(measured, rel=0.05)
