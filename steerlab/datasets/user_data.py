"""Load your own labelled statements: CSV, JSONL or a HF `datasets.Dataset`.

The expected format is the Geometry of Truth CSV: a `statement` column and a
binary `label` column (1/0, true/false, yes/no). Errors name the problem and the
fix (missing column, non-binary labels, one class only, empty file).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "facts.csv"
    >>> _ = path.write_text("statement,label\\nParis is in France.,1\\nParis is in Peru.,0\\n")
    >>> from_csv(path)
    ConceptDataset('facts', split='all', n=2, positive=1, negative=1, domain='facts')
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.datasets.concept_dataset import ConceptDataset, QADataset

_TRUE_VALUES = {"1", "true", "yes", "1.0"}
_FALSE_VALUES = {"0", "false", "no", "0.0"}


class DatasetFormatError(ValueError):
    """User data that cannot become a binary concept dataset; the message says how to fix it."""


def parse_label(value: Any, row: int, column: str, source: str) -> int:
    """One label as 0/1; accepts 0/1, booleans, and "true"/"false"/"yes"/"no" in any case."""
    text = str(value).strip().lower()
    if text in _TRUE_VALUES:
        return 1
    if text in _FALSE_VALUES:
        return 0
    raise DatasetFormatError(
        f"{source}: row {row} has label {value!r} in column {column!r}; labels must be binary "
        f"(1/0, true/false or yes/no). Map your labels to 1 = true/positive and 0 = false/negative."
    )


def rows_to_dataset(
    rows: Iterable[Mapping[str, Any]],
    source: str,
    text_column: str = "statement",
    label_column: str = "label",
    group_column: str | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ConceptDataset:
    """Validate dict rows and build a `ConceptDataset` (groups default to the row index)."""
    rows = list(rows)
    if not rows:
        raise DatasetFormatError(f"{source}: no rows found. The file or dataset is empty; add `{text_column},{label_column}` rows.")
    columns = set(rows[0])
    for column in (text_column, label_column) + ((group_column,) if group_column else ()):
        if column not in columns:
            raise DatasetFormatError(
                f"{source}: missing column {column!r}; found columns {sorted(columns)}. "
                f"Rename your columns or pass text_column=/label_column=/group_column= to name them."
            )
    texts = [str(r[text_column]) for r in rows]
    labels = np.array([parse_label(r[label_column], i, label_column, source) for i, r in enumerate(rows)], dtype=np.int64)
    if len(set(labels.tolist())) < 2:
        only = "true/positive (1)" if labels[0] == 1 else "false/negative (0)"
        raise DatasetFormatError(
            f"{source}: every label is {only}; a concept dataset needs both classes. "
            f"Add rows of the other class (e.g. negated statements)."
        )
    groups = [str(r[group_column]) for r in rows] if group_column else [str(i) for i in range(len(rows))]
    name = name or Path(source).stem
    return ConceptDataset(name=name, texts=texts, labels=labels, domain=domain or name, groups=groups,
                          spans=[(0, len(t)) for t in texts], metadata={"source": source})


def from_csv(
    path: str | Path,
    text_column: str = "statement",
    label_column: str = "label",
    group_column: str | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ConceptDataset:
    """A CSV with a header row (Geometry of Truth format: `statement,label,...`).

    Pass `group_column` (e.g. "city") to keep one entity's rows on one side of a split.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows_to_dataset(rows, str(path), text_column, label_column, group_column, name, domain)


def from_jsonl(
    path: str | Path,
    text_column: str = "statement",
    label_column: str = "label",
    group_column: str | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ConceptDataset:
    """A JSON-lines file, one object per line with at least `statement` and `label` keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: line {number} is not valid JSON ({err.msg}); write one object per line.") from err
    return rows_to_dataset(rows, str(path), text_column, label_column, group_column, name, domain)


def from_hf(
    dataset: Any,
    text_column: str = "statement",
    label_column: str = "label",
    group_column: str | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ConceptDataset:
    """A HF `datasets.Dataset` (already loaded; nothing is downloaded here)."""
    source = name or getattr(getattr(dataset, "info", None), "dataset_name", None) or "hf_dataset"
    columns = list(getattr(dataset, "column_names", []))
    if len(dataset) == 0:
        raise DatasetFormatError(f"{source}: the dataset has no rows.")
    for column in (text_column, label_column) + ((group_column,) if group_column else ()):
        if column not in columns:
            raise DatasetFormatError(
                f"{source}: missing column {column!r}; found columns {columns}. "
                f"Pass text_column=/label_column=/group_column= to name them."
            )
    wanted = [c for c in (text_column, label_column, group_column) if c]
    data = {c: dataset[c] for c in wanted}
    rows = [{c: data[c][i] for c in wanted} for i in range(len(dataset))]
    return rows_to_dataset(rows, source, text_column, label_column, group_column, name=source, domain=domain)


def qa_from_csv(path: str | Path, question_column: str = "question", answer_column: str = "answer",
                group_column: str | None = None, name: str | None = None) -> QADataset:
    """Questions with reference answers from a CSV (header row), for hallucination detection.

    The model answers each question; an answer is checked against its reference (see
    :func:`steerlab.hallucination.reference_labels`). ``group_column`` (e.g. the entity asked
    about) keeps related questions on one side of a split; by default each question is its own group.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "qa.csv"
    >>> _ = path.write_text("question,answer\\nwhere is Paris ?,France\\nwhere is Lima ?,Peru\\n")
    >>> qa = qa_from_csv(path); len(qa), qa.answers
    (2, ['France', 'Peru'])
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DatasetFormatError(f"{path}: no rows; expected a header row and one question per line.")
    for column in (question_column, answer_column) + ((group_column,) if group_column else ()):
        if column not in rows[0]:
            raise DatasetFormatError(f"{path}: no column {column!r}; columns are {list(rows[0])}. Pass "
                                     "question_column= / answer_column= / group_column= to name yours.")
    questions = [row[question_column] for row in rows]
    return QADataset(name=name or path.stem, texts=questions, answers=[row[answer_column] for row in rows],
                     groups=[row[group_column] for row in rows] if group_column else questions,
                     kinds=["qa"] * len(rows), roles=["user"] * len(rows), frequency=np.zeros(len(rows)),
                     metadata={"source": str(path)})


def split_by_group(dataset: ConceptDataset | QADataset, split: str, test_share: float = 0.3, seed: int = 0
                   ) -> ConceptDataset | QADataset:
    """The train or test part of `dataset`, with whole groups assigned to one side."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    groups = sorted(set(dataset.groups))
    test_groups = set(random.Random(seed).sample(groups, max(1, round(test_share * len(groups)))))
    keep = [i for i, g in enumerate(dataset.groups) if (g in test_groups) == (split == "test")]
    return dataclasses.replace(dataset.subset(keep), split=split)
