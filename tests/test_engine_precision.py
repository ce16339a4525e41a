"""The embedding precision is decided where the texts are encoded: by the engine's device, which on a
Ray cluster is the actor plan's (pure functions over cluster descriptions, no Ray needed), and the
local engine's encoder, cast down after the precision check's fp32 pass, equals a fresh load."""

import numpy as np
import pytest

from admap.devices import pick_device
from admap.embed import EmbeddingOptions, encoding_on, resolve_precision
from admap.encoders import EmbeddingSpec, encode_texts, load_encoder
from admap.engines.in_process import LocalEngine
from admap.engines.ray_data import RayEngine, plan_actors

GPU_NODE = {"CPU": 32.0, "GPU": 4.0}
GPU_CLUSTER = {"CPU": 64.0, "GPU": 8.0}
CPU_NODE = {"CPU": 16.0}


def actors_precision(precision: str, device: str, cluster: dict, nodes: list[dict]) -> str:
    """The precision a run on ``cluster`` embeds in: resolved against its actor plan's device."""
    plan = plan_actors(device, None, cluster, nodes)
    return EmbeddingOptions(embed_precision=precision).spec("all-MiniLM-L6-v2", plan.device).precision


def test_cuda_actors_driven_from_a_cpu_process_embed_in_fp16():
    # This process has no GPU: deciding here would give fp32.
    assert pick_device("auto") == "cpu" and resolve_precision("auto", "auto") == "fp32"
    assert actors_precision("auto", "auto", GPU_CLUSTER, [GPU_NODE, GPU_NODE]) == "fp16"
    assert actors_precision("fp16", "auto", GPU_CLUSTER, [GPU_NODE, GPU_NODE]) == "fp16"
    assert actors_precision("bf16", "cuda", GPU_CLUSTER, [GPU_NODE, GPU_NODE]) == "bf16"


def test_cpu_actors_embed_in_fp32_and_refuse_fp16():
    assert actors_precision("auto", "auto", CPU_NODE, [CPU_NODE]) == "fp32"
    # A GPU cluster asked for CPU actors encodes on the CPU.
    assert actors_precision("auto", "cpu", GPU_CLUSTER, [GPU_NODE, GPU_NODE]) == "fp32"
    assert actors_precision("bf16", "auto", CPU_NODE, [CPU_NODE]) == "bf16"
    with pytest.raises(ValueError, match="fp16 embeddings need a CUDA device, and the texts are encoded on 'cpu'"):
        actors_precision("fp16", "auto", CPU_NODE, [CPU_NODE])


def test_engines_say_where_they_encode():
    with LocalEngine(device="auto") as engine:
        assert engine.encoding_device == pick_device("auto")
    assert LocalEngine(device="cuda:1").encoding_device == "cuda:1"
    # The Ray engine knows its actors' device only once it has planned them on its cluster.
    with pytest.raises(RuntimeError, match="inside that block"):
        _ = RayEngine(device="cpu").encoding_device


@pytest.mark.slow
def test_the_local_engines_cast_down_encoder_equals_a_fresh_load():
    texts = ["A short answer.", "A somewhat longer answer about embeddings and their precision.", "Blue."]
    fresh = {
        precision: encode_texts(load_encoder(device="cpu", precision=precision), texts, batch_size=4, progress=False)
        for precision in ("fp32", "bf16")
    }
    with LocalEngine(device="cpu") as engine:
        encode = encoding_on(engine, EmbeddingSpec().model, chunk_size=len(texts), batch_size=4)
        # The precision check's order: fp32, then the lower precision (a cast of the loaded model).
        np.testing.assert_array_equal(encode(texts, "fp32"), fresh["fp32"])
        bf16 = encode(texts, "bf16")
        np.testing.assert_array_equal(bf16, fresh["bf16"])
        assert 0 < np.abs(bf16 - fresh["fp32"]).max() < 0.02
        # Back to fp32 after bf16 loads the model again instead of keeping bf16's rounding.
        np.testing.assert_array_equal(encode(texts, "fp32"), fresh["fp32"])
