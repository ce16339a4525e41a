"""The pairs admap writes are TRL-ready: TRL's DPOTrainer takes a pairs file as it is and trains on it."""

import pytest

from tests.runs import map_without_models


@pytest.mark.slow
def test_dpo_trains_on_a_pairs_file(tmp_path):
    pytest.importorskip("trl")
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from admap.models import materialize_gguf, resolve_generator_model

    rows = [
        {
            "instruction": f"Name a colour, number {k}.",
            "input": "",
            "chosen": f"Blue is a colour ({k}).",
            "rejected": f"I refuse {k}.",
            "proxy": f"A colour: blue ({k}).",
        }
        for k in range(6)
    ]
    run = map_without_models(rows, tmp_path)
    dataset = load_dataset("json", data_files=str(run / "pairs" / "full.jsonl"), split="train")
    assert len(dataset) == 6 and dataset[0]["prompt"][0]["role"] == "user"

    checkpoint = str(materialize_gguf(*resolve_generator_model("smollm2")))
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=64,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(checkpoint)
    )
    result = trainer.train()
    assert result.training_loss > 0
    assert any(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters())
