"""Post-training of sentence embedding models on LLM-generated ranking sentences.

Reference implementation of He et al., "Refining Sentence Embedding Model through Ranking
Sentences Generation with Large Language Models" (Findings of ACL 2025, arXiv:2502.13656).
"""

__version__ = "0.1.0"
