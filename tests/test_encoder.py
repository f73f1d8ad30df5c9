"""Poolers and the sentence encoder, on a tiny random BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from rankcse.encoder import SentenceEncoder, detect_pooler
from rankcse.pooling import POOLERS, pool

SENTENCES = ["a man is playing a guitar on stage .", "two dogs run .", "a man is playing a guitar on stage ."]


def _reference_embeddings(folder: Path, pooler: str, sentences: list[str]) -> torch.Tensor:
    """One sentence at a time, no padding at all: the slow, obviously-right computation."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    rows = []
    with torch.no_grad():
        for sentence in sentences:
            batch = tokenizer([sentence], return_tensors="pt")
            out = model(**batch, output_hidden_states=True)
            hs = out.hidden_states
            if pooler == "cls":
                rows.append(out.pooler_output[0])
            elif pooler == "cls_before_pooler":
                rows.append(hs[-1][0, 0])
            elif pooler == "avg":
                rows.append(hs[-1][0].mean(0))
            elif pooler == "avg_top2":
                rows.append(((hs[-1] + hs[-2]) / 2)[0].mean(0))
            else:  # avg_first_last: first transformer layer is hidden_states[1]
                rows.append(((hs[1] + hs[-1]) / 2)[0].mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("pooler", POOLERS)
def test_encode_matches_unpadded_reference(tiny_bert_dir: Path, pooler: str) -> None:
    encoder = SentenceEncoder(str(tiny_bert_dir), pooler=pooler, device="cpu")
    got = encoder.encode(SENTENCES, batch_size=2)
    expected = _reference_embeddings(tiny_bert_dir, pooler, SENTENCES)
    assert got.shape == (3, 32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_avg_first_last_differs_from_embedding_layer_convention(tiny_bert_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    batch = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    ours = pool("avg_first_last", batch["attention_mask"], out)
    with_embeddings = pool(
        "avg",
        batch["attention_mask"],
        type(out)(last_hidden_state=(out.hidden_states[0] + out.hidden_states[-1]) / 2),
    )
    assert not torch.allclose(ours, with_embeddings)


def test_encode_keeps_input_order_and_duplicates(tiny_bert_dir: Path) -> None:
    encoder = SentenceEncoder(str(tiny_bert_dir), pooler="avg", device="cpu")
    got = encoder.encode(SENTENCES, batch_size=1, convert_to_numpy=True)
    assert got.shape == (3, 32)
    assert (got[0] == got[2]).all()
    assert not (got[0] == got[1]).all()
    with pytest.raises(TypeError):
        encoder.encode("one string")


def test_unknown_pooler_is_rejected(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown pooler"):
        SentenceEncoder(str(tiny_bert_dir), pooler="max", device="cpu")


def _as_sentence_transformers_folder(src: Path, dst: Path, mode_key: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (dst / "1_Pooling").mkdir()
    flags = {k: False for k in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")}
    flags[mode_key] = True
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    return dst


def test_pooler_detected_from_sentence_transformers_files(tiny_bert_dir: Path, tmp_path: Path) -> None:
    mean_dir = _as_sentence_transformers_folder(tiny_bert_dir, tmp_path / "mean", "pooling_mode_mean_tokens")
    cls_dir = _as_sentence_transformers_folder(tiny_bert_dir, tmp_path / "cls", "pooling_mode_cls_token")
    max_dir = _as_sentence_transformers_folder(tiny_bert_dir, tmp_path / "max", "pooling_mode_max_tokens")
    assert detect_pooler(str(mean_dir)) == "avg"
    assert detect_pooler(str(cls_dir)) == "cls_before_pooler"
    assert detect_pooler(str(tiny_bert_dir)) is None
    with pytest.raises(ValueError, match="no equivalent pooler"):
        detect_pooler(str(max_dir))
    assert SentenceEncoder(str(mean_dir), device="cpu").pooler == "avg"


def test_cls_pooler_refused_where_pooler_weights_were_never_trained(tiny_bert_dir: Path, tmp_path: Path) -> None:
    st_dir = _as_sentence_transformers_folder(tiny_bert_dir, tmp_path / "st", "pooling_mode_mean_tokens")
    with pytest.raises(ValueError, match="cls_before_pooler"):
        SentenceEncoder(str(st_dir), pooler="cls", device="cpu")

    # A checkpoint saved without pooler weights: transformers would initialise them at random.
    no_pooler = tmp_path / "no_pooler"
    model = AutoModel.from_pretrained(tiny_bert_dir, add_pooling_layer=False)
    model.save_pretrained(no_pooler)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(no_pooler)
    with pytest.raises(ValueError, match="cls_before_pooler"):
        SentenceEncoder(str(no_pooler), pooler="cls", device="cpu")

    # Our own marker saying the pooler was dropped at inference (mlp_only_train).
    marked = tmp_path / "marked"
    shutil.copytree(tiny_bert_dir, marked)
    config = json.loads((marked / "config.json").read_text())
    config["rankcse"] = {"pooler": "cls_before_pooler", "pooler_trained": False}
    (marked / "config.json").write_text(json.dumps(config))
    assert SentenceEncoder(str(marked), device="cpu").pooler == "cls_before_pooler"
    with pytest.raises(ValueError, match="not trained"):
        SentenceEncoder(str(marked), pooler="cls", device="cpu")

    # A plain checkpoint with trained pooler weights is accepted.
    assert SentenceEncoder(str(tiny_bert_dir), pooler="cls", device="cpu").pooler == "cls"
