"""Concept datasets: built-in demo-world and English sets, and loaders for your own data.

Example:
    >>> import steerlab.datasets as sd
    >>> ds = sd.load("demo/cities", split="train")
    >>> ds.texts[0].endswith(" ."), ds.verdict_words
    (True, ('true', 'false'))
    >>> len(sd.ContrastPairs.from_dataset(sd.load("demo/sentiment"))) > 0
    True
"""

from steerlab.datasets.builtin import available, demo_world, load
from steerlab.datasets.concept_dataset import ConceptDataset, QADataset
from steerlab.datasets.contrast_pairs import ContrastPairs
from steerlab.datasets.user_data import (DatasetFormatError, from_csv, from_hf, from_jsonl, qa_from_csv,
                                         read_lines, read_text_column, split_by_group)

__all__ = [
    "ConceptDataset", "ContrastPairs", "DatasetFormatError", "QADataset", "available",
    "from_csv", "from_hf", "from_jsonl", "load", "qa_from_csv", "read_lines", "read_text_column",
    "split_by_group",
]
