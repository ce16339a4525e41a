"""benchmarks/gpu_check.py end to end at its tiny size on the CPU, so that its first GPU run finds no
bug the CPU could have found: every step runs in its own process and lands in the record, DPO under
bf16 autocast changes the weights fp32 changes, the margins cover every trained pair once per epoch,
the LoRA adapter is merged, the 7B-shaped step runs beside its memory estimate."""

import json

import pytest

from tests.test_gpu_scale_script import load_script


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path, capsys):
    gpu_check = load_script("gpu_check")
    out = tmp_path / "out"
    argv = ["--size", "tiny", "--device", "cpu", "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    record = gpu_check.main(argv)

    assert record == json.loads((out / "gpu_check.json").read_text())
    steps = record["steps"]
    assert record["complete"] and all(step["status"] == "ok" for step in steps.values()), steps
    assert set(steps) == {*gpu_check.STEPS[:-2], "seven_b_step_batch4", "seven_b_step_batch2", "embedding_precision"}

    shares = steps["adamw_precision"]["changed_share"]
    assert shares["float32"] > 0.99 and shares["bfloat16"] < 0.05
    dpo = steps["dpo_steps"]
    assert dpo["changed_share"] > 0.99 and dpo["metrics"]["train_steps"] == 3
    assert dpo["margins"]["rows"] == dpo["margins"]["distinct_pairs"] == dpo["metrics"]["train_pairs"]
    assert dpo["metrics"]["train_pairs"] + dpo["metrics"]["train_pairs_dropped"] == dpo["pairs"]
    assert (out / "dpo_steps_pair_margins.parquet").exists()
    lora = steps["dpo_lora"]
    assert lora["merged_differs_from_base"] and "adapter_model.safetensors" in lora["adapter_files"]
    for batch in (4, 2):
        step = steps[f"seven_b_step_batch{batch}"]
        assert step["fits"] and step["per_device_batch"] == batch and step["pairs_fill_max_length"]
        assert step["estimate"]["total"] > step["estimate"]["weights"] > 0
    assert (
        steps["seven_b_step_batch4"]["estimate"]["activations"]
        > steps["seven_b_step_batch2"]["estimate"]["activations"]
    )
    embedding = steps["embedding_precision"]["bf16"]
    assert embedding["pairs"] == steps["embedding_precision"]["pairs"] and embedding["spearman"] > 0.99
    assert "| dpo_steps: weights changed |" in capsys.readouterr().out
