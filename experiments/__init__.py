"""Experiments on top of admap: DPO on selected subsets (TRL), judged answers (MT-Bench,
Evol-Instruct, AlpacaEval), W&B logging, and sweeps. Run one with ``python -m admap_experiments.run``."""
