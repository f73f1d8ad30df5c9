"""Model backends for guided generation: transformers (exact, CPU/GPU) and llama.cpp (GGUF, CPU)."""
