"""Ranking-sentence generation: guided LLM rewriting chains (generate.py) and their merge (merge.py)."""
