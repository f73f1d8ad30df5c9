"""Which MTEB tasks to run and where their data comes from (hub, local copies, or built offline).

* :data:`PAPER_TASKS`: the four MTEB reranking tasks the paper reports (MAP).
* :data:`OFFLINE_TASKS`: tasks built from data the project ships (``STSBReranking``).
* ``data_dir``: a folder of local copies in MTEB's own hub layout, one sub-folder per task, named
  after the task (``AskUbuntuDupQuestions``) or after its data set (``mteb/AskUbuntuDupQuestions``
  or its last part). A copy made with
  ``hf download mteb/AskUbuntuDupQuestions --repo-type dataset --local-dir DIR/AskUbuntuDupQuestions``
  works as it is; :func:`save_local_copy` writes one from a loaded task.

Every failure to find or fetch data raises :class:`TaskDataUnavailableError` with the task, the
place that was tried and what to do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mteb
from mteb.abstasks import AbsTask

from rankcse.mteb_offline_task import TASK_NAME as OFFLINE_TASK_NAME
from rankcse.mteb_offline_task import STSBReranking

logger = logging.getLogger(__name__)

PAPER_TASKS: tuple[str, ...] = (
    "AskUbuntuDupQuestions",
    "MindSmallReranking",
    "SciDocsRR",
    "StackOverflowDupQuestions",
)
OFFLINE_TASKS: dict[str, type[AbsTask]] = {OFFLINE_TASK_NAME: STSBReranking}

# MTEB's hub layout for retrieval/reranking data: config name -> what it holds.
_RETRIEVAL_CONFIGS = ("corpus", "queries", "default", "top_ranked")


class TaskDataUnavailableError(RuntimeError):
    """The data of an MTEB task could not be found locally or fetched from the hub."""


def _task_names_hint() -> str:
    return f"offline task here: {', '.join(OFFLINE_TASKS)}; the paper's tasks: {', '.join(PAPER_TASKS)}"


def get_task(name: str, data_dir: Path | None = None) -> AbsTask:
    """An MTEB task object by name, pointed at a local copy of its data when ``data_dir`` has one.

    Raises:
        ValueError: ``name`` is neither an offline task nor an MTEB task.
        TaskDataUnavailableError: ``data_dir`` is given but holds no copy of this task.
    """
    if name in OFFLINE_TASKS:
        return OFFLINE_TASKS[name]()
    try:
        task = mteb.get_task(name)
    except KeyError as error:
        message = error.args[0] if error.args else str(error)
        raise ValueError(f"Unknown MTEB task {name!r} ({message}); {_task_names_hint()}") from None
    if data_dir is not None:
        use_local_copy(task, find_local_copy(task, data_dir))
    return task


def find_local_copy(task: AbsTask, data_dir: Path) -> Path:
    """The sub-folder of ``data_dir`` that holds ``task``'s data (see the module docstring)."""
    dataset_path = str(task.metadata.dataset["path"])
    candidates = [data_dir / task.metadata.name, data_dir / dataset_path, data_dir / Path(dataset_path).name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise TaskDataUnavailableError(
        f"No local copy of {task.metadata.name} in --data_dir {data_dir} (looked for {tried}). "
        + _download_hint(task, data_dir)
    )


def use_local_copy(task: AbsTask, folder: Path) -> None:
    """Make ``task`` (this instance only) load its data from ``folder`` instead of the hub."""
    metadata = task.metadata.model_copy(deep=True)
    metadata.dataset = {**metadata.dataset, "path": str(folder)}
    task.metadata = metadata
    logger.info("%s: using the local copy in %s", task.metadata.name, folder)


def _download_hint(task: AbsTask, data_dir: Path | str = "DATA_DIR") -> str:
    dataset = task.metadata.dataset
    revision = f" --revision {dataset['revision']}" if dataset.get("revision") else ""
    return (
        "On a machine with Hugging Face hub access, download it with\n"
        f"    hf download {dataset['path']} --repo-type dataset{revision} "
        f"--local-dir {data_dir}/{task.metadata.name}\n"
        f"and pass --data_dir {data_dir}. ({_task_names_hint()}.)"
    )


def load_task_data(task: AbsTask) -> None:
    """Load ``task``'s data now, turning any failure to reach it into one clear error."""
    from datasets.exceptions import DatasetsError

    try:
        task.load_data()
    except (OSError, ValueError, DatasetsError) as error:
        name = task.metadata.name
        source = task.metadata.dataset["path"]
        if name in OFFLINE_TASKS:
            raise TaskDataUnavailableError(f"Could not build the offline task {name}: {error}") from error
        if Path(str(source)).is_dir():
            raise TaskDataUnavailableError(
                f"Could not load {name} from the local copy {source}: {type(error).__name__}: {error}. "
                "It must be in MTEB's hub layout (README.md with the configs corpus, queries, default "
                "(qrels) and, for reranking, top_ranked)."
            ) from error
        raise TaskDataUnavailableError(
            f"Could not fetch the data of MTEB task {name} ({source}) from the Hugging Face hub: "
            f"{type(error).__name__}: {error}\n" + _download_hint(task)
        ) from error


def save_local_copy(task: AbsTask, folder: Path) -> Path:
    """Write a loaded retrieval/reranking task's data into ``folder`` in MTEB's hub layout.

    The folder then works as a ``--data_dir`` entry: one parquet file per config and split, and a
    README.md whose YAML header declares the configs, as on the hub.
    """
    from datasets import Dataset

    if not task.data_loaded:
        load_task_data(task)
    folder.mkdir(parents=True, exist_ok=True)
    header = ["---", "configs:"]
    for config in _RETRIEVAL_CONFIGS:
        header += [f"- config_name: {config}", "  data_files:"]
        for split, data in task.dataset["default"].items():
            if config == "corpus":
                table = data["corpus"]
            elif config == "queries":
                table = data["queries"]
            elif config == "default":
                rows = [(q, d, s) for q, docs in data["relevant_docs"].items() for d, s in docs.items()]
                table = Dataset.from_dict(
                    {
                        "query-id": [r[0] for r in rows],
                        "corpus-id": [r[1] for r in rows],
                        "score": [r[2] for r in rows],
                    }
                )
            else:
                top_ranked = data.get("top_ranked") or {}
                table = Dataset.from_dict({"query-id": list(top_ranked), "corpus-ids": list(top_ranked.values())})
            (folder / config).mkdir(exist_ok=True)
            target = folder / config / f"{split}-00000-of-00001.parquet"
            tmp = target.with_suffix(".parquet.tmp")
            table.to_parquet(str(tmp))
            tmp.replace(target)
            header += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    header.append("---")
    readme = folder / "README.md"
    tmp_readme = readme.with_suffix(".md.tmp")
    tmp_readme.write_text("\n".join(header) + f"\n\nLocal copy of the MTEB task {task.metadata.name}.\n")
    tmp_readme.replace(readme)
    return folder
