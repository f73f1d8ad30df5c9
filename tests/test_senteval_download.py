"""download_dataset.sh, run against a local archive (file:// URL) instead of the public one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from senteval_subsets import build_task_subsets

SCRIPT = Path(__file__).resolve().parents[1] / "SentEval" / "data" / "downstream" / "download_dataset.sh"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None and shutil.which("wget") is None, reason="no curl/wget")


def _archive(tmp_path: Path, prefix: str) -> Path:
    """A tar of small task folders, laid out like the public archive (optionally under a prefix)."""
    source = build_task_subsets(tmp_path / "source") / "downstream"
    (source / "SNLI").mkdir()
    (source / "SNLI" / "s1.dev").write_text("a man .\n", encoding="utf-8")
    archive = tmp_path / "senteval.tar"
    with tarfile.open(archive, "w") as tar:
        for task in sorted(os.listdir(source)):
            tar.add(source / task, arcname=f"{prefix}{task}")
    return archive


def _run(target: Path, archive: Path, *args: str) -> subprocess.CompletedProcess:
    target.mkdir(parents=True, exist_ok=True)
    script = target / "download_dataset.sh"
    shutil.copy(SCRIPT, script)
    env = {**os.environ, "SENTEVAL_ARCHIVE_URL": archive.as_uri()}
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("prefix", ["", "downstream/"])
def test_installs_every_task_and_keeps_existing_ones(tmp_path: Path, prefix: str) -> None:
    archive = _archive(tmp_path, prefix)
    target = tmp_path / "data" / "downstream"
    (target / "SICK").mkdir(parents=True)
    (target / "SICK" / "readme.txt").write_text("licence text\n", encoding="utf-8")

    first = _run(target, archive)
    # SICK existed (only a readme), so it was kept and the check for its data file fails
    assert first.returncode == 1, first.stderr
    assert "SICK/ already present; kept" in first.stdout
    assert "missing after download: SICK/SICK_test_annotated.txt" in first.stderr
    assert (target / "MR" / "rt-polarity.pos").read_bytes() == (
        tmp_path / "source/downstream/MR/rt-polarity.pos"
    ).read_bytes()

    forced = _run(target, archive, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (target / "SICK" / "SICK_test_annotated.txt").is_file()
    assert (target / "SICK" / "readme.txt").read_text(encoding="utf-8") == "licence text\n"  # ours stays
    assert not list(target.glob(".download.*"))  # temporary folder removed


def test_an_archive_without_tasks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x", encoding="utf-8")
    archive = tmp_path / "junk.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "junk", arcname="junk")
    result = _run(tmp_path / "target", archive)
    assert result.returncode == 1
    assert "does not contain SentEval task folders" in result.stderr


def test_unreachable_archive_fails(tmp_path: Path) -> None:
    result = _run(tmp_path / "target", tmp_path / "absent.tar")
    assert result.returncode != 0
