"""admap: Alignment Data Maps of LLM preference data (Lee, Kim, Lee, Chang; arXiv 2505.23114)."""

__version__ = "0.1.0"
