"""The teacher's similarity matrices and their content-keyed disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_bert
from safetensors.torch import load_file, save_file

from rankcse import teacher as teacher_module
from rankcse.ranking_data import read_ranking_file, write_ranking_csv
from rankcse.teacher import Teacher, cached_similarity_matrices, model_fingerprint, similarity_matrix

torch.set_num_threads(1)  # tiny models: more threads only add contention

LISTS = [
    ["a man is playing a guitar .", "a man plays the guitar .", "a woman is slicing an onion .", "a dog runs ."],
    ["two children play in the water .", "kids are swimming .", "a car drives on the road ."],
    ["a cat sits on a table .", "the cat is sitting .", "a person is eating food .", "people walk .", "a red ball ."],
]


class CountingTeacher(Teacher):
    """A real Teacher that counts how many lists it actually had to encode."""

    encoded_lists = 0

    def similarity_matrices(self, lists, show_progress_bar=False):  # type: ignore[override]
        CountingTeacher.encoded_lists += len(lists)
        return super().similarity_matrices(lists, show_progress_bar)


@pytest.fixture
def teacher_dir(tmp_path: Path) -> Path:
    return write_tiny_bert(tmp_path / "teacher", hidden_size=48, seed=3)


def make_teacher(folder: Path, tau2: float = 0.05) -> CountingTeacher:
    CountingTeacher.encoded_lists = 0
    return CountingTeacher(str(folder), pooler="cls_before_pooler", tau2=tau2, max_length=32, device="cpu")


def test_similarity_matrix_is_float32_cosine_over_tau2() -> None:
    embeddings = torch.randn(5, 8).half()
    matrix = similarity_matrix(embeddings, tau2=0.05)
    assert matrix.dtype == torch.float32 and matrix.shape == (5, 5)
    reference = torch.nn.functional.cosine_similarity(
        embeddings.float()[:, None, :], embeddings.float()[None, :, :], dim=-1
    )
    torch.testing.assert_close(matrix, reference / 0.05, atol=1e-4, rtol=1e-5)


def test_matrices_match_a_direct_encoding(teacher_dir: Path) -> None:
    teacher = make_teacher(teacher_dir)
    matrices = teacher.similarity_matrices(LISTS)
    for sentences, matrix in zip(LISTS, matrices, strict=True):
        direct = teacher.encoder.encode(sentences)
        torch.testing.assert_close(matrix, similarity_matrix(direct, 0.05))
        assert matrix.shape == (len(sentences), len(sentences))
        torch.testing.assert_close(matrix.diagonal(), torch.full((len(sentences),), 20.0), atol=1e-4, rtol=0)
        assert not matrix.requires_grad
    assert not any(p.requires_grad for p in teacher.encoder.model.parameters())
    assert not teacher.encoder.model.training


def test_second_run_reads_the_cache(teacher_dir: Path, tmp_path: Path) -> None:
    first = cached_similarity_matrices(make_teacher(teacher_dir), LISTS, tmp_path / "cache")
    assert CountingTeacher.encoded_lists == len(LISTS)
    second = cached_similarity_matrices(make_teacher(teacher_dir), LISTS, tmp_path / "cache")
    assert CountingTeacher.encoded_lists == 0
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_training_file_overwritten_in_place_is_recomputed(teacher_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    write_ranking_csv(data, LISTS)
    stat = data.stat()
    cached_similarity_matrices(make_teacher(teacher_dir), read_ranking_file(data), tmp_path / "cache")

    # Same path, same size, same modification time; one sentence differs.
    changed = [list(sentences) for sentences in LISTS]
    changed[1][2] = "a bus drives on the road ."
    write_ranking_csv(data, changed)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.stat().st_size == stat.st_size and data.stat().st_mtime_ns == stat.st_mtime_ns

    teacher = make_teacher(teacher_dir)
    matrices = cached_similarity_matrices(teacher, read_ranking_file(data), tmp_path / "cache")
    assert CountingTeacher.encoded_lists == len(LISTS)
    fresh = teacher.similarity_matrices(changed)
    for a, b in zip(matrices, fresh, strict=True):
        torch.testing.assert_close(a, b)


def test_other_teacher_weights_or_settings_are_recomputed(teacher_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached_similarity_matrices(make_teacher(teacher_dir), LISTS, cache)

    cached_similarity_matrices(make_teacher(teacher_dir, tau2=0.1), LISTS, cache)
    assert CountingTeacher.encoded_lists == len(LISTS)

    # Change one weight of the teacher in place: same folder, new content.
    before = model_fingerprint(str(teacher_dir))
    weights_file = teacher_dir / "model.safetensors"
    weights = load_file(str(weights_file))
    name = next(key for key in weights if key.endswith("word_embeddings.weight"))
    weights[name][5] += 1.0
    save_file(weights, str(weights_file), metadata={"format": "pt"})
    assert model_fingerprint(str(teacher_dir)) != before
    cached_similarity_matrices(make_teacher(teacher_dir), LISTS, cache)
    assert CountingTeacher.encoded_lists == len(LISTS)


def test_interrupted_cache_recomputes_only_missing_chunks(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teacher_module, "CHUNK_SIZE", 1)
    cache = tmp_path / "cache"
    first = cached_similarity_matrices(make_teacher(teacher_dir), LISTS, cache)
    chunks = sorted(cache.glob("*/chunk-*.safetensors"))
    assert len(chunks) == len(LISTS)
    chunks[1].unlink()  # as if the run had stopped before writing it
    chunks[2].write_bytes(b"not a safetensors file")  # or a foreign file had appeared

    again = cached_similarity_matrices(make_teacher(teacher_dir), LISTS, cache)
    assert CountingTeacher.encoded_lists == 2
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)


def test_memory_only_when_no_cache_dir(teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    matrices = cached_similarity_matrices(make_teacher(teacher_dir), LISTS, None)
    assert len(matrices) == len(LISTS)
    assert not any(tmp_path.rglob("chunk-*")) and not any(tmp_path.rglob("meta.json"))
