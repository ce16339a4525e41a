"""How much training moved a model's weights: the check that DPO trained at all.

At the recipes' learning rates (5e-7 for full fine-tuning) one AdamW step moves a weight by about
the learning rate, far below bf16's resolution (a weight of 0.02 has bf16 neighbours 8e-5 apart), so
an optimizer that updates bf16 weights with no fp32 master copy leaves almost every weight where it
was: the loss stays near log 2 and the "trained" policy is the base model. The share of weights that
changed tells the two apart at once: nearly all of them with fp32 master weights, a few percent
without.
"""

from __future__ import annotations

from pathlib import Path


def changed_share(before: dict, after: dict) -> float:
    """Share of the elements of the tensors in ``before`` that differ in ``after`` (same names)."""
    changed = total = 0
    for name, tensor in before.items():
        changed += int((after[name] != tensor).sum())
        total += tensor.numel()
    return changed / total


def checkpoint_weights(path: str | Path) -> dict:
    """Every tensor of a saved checkpoint's safetensors files, on the CPU, by name."""
    from safetensors.torch import load_file

    weights: dict = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        weights |= load_file(file)
    if not weights:
        raise FileNotFoundError(f"{path}: no .safetensors files")
    return weights


def adamw_update_share(model, *, dtype, learning_rate: float, steps: int, seed: int = 0) -> float:
    """Share of ``model``'s weights that ``steps`` AdamW steps change when the weights are held in
    ``dtype`` (a copy of the model is trained; the model itself is left alone). The gradient of a
    random next-token loss stands in for DPO's: what is measured is the optimizer's arithmetic."""
    import copy

    import torch

    trained = copy.deepcopy(model).to(dtype).train()
    before = {name: p.detach().clone() for name, p in trained.named_parameters()}
    optimizer = torch.optim.AdamW(trained.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    device = next(trained.parameters()).device
    vocab = trained.config.vocab_size
    for _ in range(steps):
        tokens = torch.randint(vocab, (2, 32), generator=generator).to(device)
        loss = trained(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    share = changed_share(before, {name: p.detach() for name, p in trained.named_parameters()})
    del trained, optimizer
    return share
