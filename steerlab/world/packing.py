"""Turn the endless line stream into padded token batches for training.

Each row is ONE line, `<bos> words... <eos>`, starting at position 0, right-padded
with `<pad>`. Why not pack several lines per row: with learned absolute positions,
lines at random offsets make "look 4 tokens back" a different thing at every
offset, and with packing the demo model stayed at chance on number comparisons
for 1000 steps. Lines are bucketed by length (a pool of several batches is sorted
by length, cut into batches, and the batches shuffled) to keep padding small.

Example:
    >>> from steerlab.world.world import generate_world
    >>> from steerlab.world.corpus import CorpusStream
    >>> from steerlab.world.tokenizer import token_to_id_map
    >>> w = generate_world(seed=0)
    >>> batches = LineBatches(CorpusStream(w, seed=0), token_to_id_map(w), lines_per_batch=4)
    >>> ids, mask = batches.next_batch()
    >>> ids.shape == mask.shape, ids.shape[0], int(ids[0, 0]) == 2
    (True, 4, True)
"""

from __future__ import annotations

import random

import numpy as np

from steerlab.world.corpus import CorpusStream


class LineBatches:
    """Draws `(input_ids [b, t], attention_mask [b, t])` int64 arrays, one line per row, t <= max_len."""

    def __init__(
        self,
        stream: CorpusStream,
        vocab: dict[str, int],
        lines_per_batch: int,
        max_len: int = 64,
        pool_batches: int = 8,
    ) -> None:
        self.stream = stream
        self.vocab = vocab
        self.lines_per_batch = lines_per_batch
        self.max_len = max_len
        self.pool_batches = pool_batches
        self._bos, self._eos, self._pad = vocab["<bos>"], vocab["<eos>"], vocab["<pad>"]
        self._ready: list[list[list[int]]] = []
        self._order_rng = random.Random(stream.rng.random())

    def encode_line(self, line: str) -> list[int]:
        """`<bos>` + word ids + `<eos>`, cut to max_len; KeyError on an out-of-vocabulary word (a world bug)."""
        return [self._bos, *(self.vocab[w] for w in line.split()), self._eos][: self.max_len]

    def _refill(self) -> None:
        pool = [self.encode_line(self.stream.next_line()) for _ in range(self.lines_per_batch * self.pool_batches)]
        pool.sort(key=len)
        batches = [pool[i : i + self.lines_per_batch] for i in range(0, len(pool), self.lines_per_batch)]
        self._order_rng.shuffle(batches)
        self._ready = batches

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Next `(input_ids, attention_mask)`, both `[lines_per_batch, longest line in batch]`."""
        if not self._ready:
            self._refill()
        rows = self._ready.pop()
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask
