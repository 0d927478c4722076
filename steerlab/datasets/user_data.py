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
import io
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


def parse_label(value: Any, row: int | str, column: str, source: str) -> int:
    """One label as 0/1; accepts 0/1, booleans, and "true"/"false"/"yes"/"no" in any case.

    ``row`` names the row in the error message: a row number, or a phrase such as ``"line 3"``.
    """
    text = str(value).strip().lower()
    if text in _TRUE_VALUES:
        return 1
    if text in _FALSE_VALUES:
        return 0
    where = row if isinstance(row, str) else f"row {row}"
    raise DatasetFormatError(
        f"{source}: {where} has label {value!r} in column {column!r}; labels must be binary "
        f"(1/0, true/false or yes/no). Map your labels to 1 = true/positive and 0 = false/negative."
    )


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a leading byte-order mark, as Excel writes, is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise DatasetFormatError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} on line {line}); "
            f"save it as UTF-8 (e.g. 'CSV UTF-8' in Excel, or `iconv -f latin1 -t utf-8`)."
        ) from None


def read_lines(path: str | Path) -> list[str]:
    """A text file's non-blank lines, one text each (UTF-8; a clear error otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return [line for line in _read_text(path).splitlines() if line.strip()]


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(rows, the file line each starts on) of a CSV with a header row; blank lines are skipped."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    rows, lines = [], []
    for row in reader:
        rows.append(row)
        # reader.line_num is the row's last line; a quoted field may hold newlines
        fields = [v for value in row.values() for v in (value if isinstance(value, list) else [value])]
        lines.append(reader.line_num - sum(v.count("\n") for v in fields if isinstance(v, str)))
    return rows, lines


def rows_to_dataset(
    rows: Iterable[Mapping[str, Any]],
    source: str,
    text_column: str = "statement",
    label_column: str = "label",
    group_column: str | None = None,
    name: str | None = None,
    domain: str | None = None,
    line_numbers: list[int] | None = None,
) -> ConceptDataset:
    """Validate dict rows and build a `ConceptDataset` (groups default to the row index).

    ``line_numbers`` (one per row) are the file lines that errors name; without them errors
    name the 0-based row index.
    """
    rows = list(rows)
    if not rows:
        raise DatasetFormatError(f"{source}: no rows found. The file or dataset is empty; add `{text_column},{label_column}` rows.")
    where = [f"line {n}" for n in line_numbers] if line_numbers is not None else [f"row {i}" for i in range(len(rows))]
    required = (text_column, label_column) + ((group_column,) if group_column else ())
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DatasetFormatError(f"{source}: {where[i]} is a {type(row).__name__}, not an object with named "
                                     f"columns; write each row as {{\"{text_column}\": ..., \"{label_column}\": ...}}.")
        # csv.DictReader fills the columns a short row lacks with None
        missing = [c for c in required if row.get(c) is None]
        if missing:
            if i == 0:  # the header (CSV) or the first object (JSONL): the column is named differently
                raise DatasetFormatError(
                    f"{source}: missing column {missing[0]!r}; found columns {sorted(map(str, row))}. "
                    f"Rename your columns or pass text_column=/label_column=/group_column= to name them."
                )
            raise DatasetFormatError(f"{source}: {where[i]} has no {missing[0]!r} value; give every row "
                                     f"{', '.join(repr(c) for c in required)} (or delete the row).")
        if not str(row[text_column]).strip():
            raise DatasetFormatError(f"{source}: {where[i]} has an empty {text_column!r}; "
                                     "write the text or delete the row.")
    texts = [str(r[text_column]) for r in rows]
    labels = np.array([parse_label(r[label_column], where[i], label_column, source) for i, r in enumerate(rows)],
                      dtype=np.int64)
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
    rows, lines = _read_csv(path)
    return rows_to_dataset(rows, str(path), text_column, label_column, group_column, name, domain, line_numbers=lines)


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
    rows, lines = _read_jsonl(path)
    return rows_to_dataset(rows, str(path), text_column, label_column, group_column, name, domain, line_numbers=lines)


def _read_jsonl(path: Path) -> tuple[list[Any], list[int]]:
    """(objects, the file line of each) of a JSON-lines file; blank lines are skipped."""
    rows, lines = [], []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: line {number} is not valid JSON ({err.msg}); write one object per line.") from err
        lines.append(number)
    return rows, lines


def read_text_column(path: str | Path, text_column: str = "text") -> list[str]:
    """One column of a CSV (header row) or JSON-lines file (``.jsonl``) as a list of texts, unlabelled.

    For corpora to capture activations over (``steerlab capture --data FILE --text-column COL``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows, lines = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _read_csv(path)
    if not rows:
        raise DatasetFormatError(f"{path}: no rows; expected a header row (or one JSON object per line) and texts.")
    texts = []
    for row, line in zip(rows, lines):
        value = row.get(text_column) if isinstance(row, Mapping) else None
        if value is None:
            found = sorted(map(str, row)) if isinstance(row, Mapping) else type(row).__name__
            raise DatasetFormatError(f"{path}: line {line} has no column {text_column!r} (found {found}); pass "
                                     "text_column= naming the column that holds the texts.")
        texts.append(str(value))
    return texts


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
    rows, lines = _read_csv(path)
    if not rows:
        raise DatasetFormatError(f"{path}: no rows; expected a header row and one question per line.")
    required = (question_column, answer_column) + ((group_column,) if group_column else ())
    for column in required:
        if column not in rows[0]:
            raise DatasetFormatError(f"{path}: no column {column!r}; columns are {list(rows[0])}. Pass "
                                     "question_column= / answer_column= / group_column= to name yours.")
    for row, line in zip(rows, lines):
        for column in required:
            if not (row.get(column) or "").strip():
                raise DatasetFormatError(f"{path}: line {line} has an empty {column!r}; "
                                         "fill it in or delete the row.")
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
