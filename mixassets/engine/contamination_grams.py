"""The inverted index over item n-gram hashes that every lexical method of the contamination screen queries.

Why its own module: the word, code, line, body and semantic-candidate methods each build one over their own
hashes of the items and probe it with every document's hashes, so it sits below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GramIndex:
    """Inverted index over item n-gram hashes in CSR form: ``refs[ptr[k]:ptr[k+1]]`` hold ``keys[k]``."""

    g: int
    keys: np.ndarray  # sorted unique uint64
    ptr: np.ndarray  # int64, len(keys) + 1
    refs: np.ndarray  # int64 field refs
    field_counts: np.ndarray  # int64 per field ref: its distinct n-grams (0 if not indexed by this method)
    filter: np.ndarray  # bool, indexed by a hash's low bits: could the hash be a key?
    mask: np.uint64

    @classmethod
    def build(cls, g: int, per_field: list[np.ndarray]) -> GramIndex:
        grams = np.concatenate([np.empty(0, np.uint64), *per_field])
        refs = np.repeat(np.arange(len(per_field), dtype=np.int64), [len(a) for a in per_field])
        order = np.argsort(grams, kind="stable")
        grams, refs = grams[order], refs[order]
        keys, first = np.unique(grams, return_index=True)
        counts = np.array([len(a) for a in per_field], dtype=np.int64)
        bits = int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 64)), 16, 24))
        mask = np.uint64((1 << bits) - 1)
        table = np.zeros(1 << bits, dtype=bool)
        table[keys & mask] = True
        ptr = np.append(first, len(grams)).astype(np.int64)
        return cls(g, keys, ptr, refs, counts, table, mask)

    def lookup(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``grams``, key indices) of the grams that are in the index.

        Almost every n-gram of a corpus is in no item, so a bit table over the hashes' low bits (a
        one-hash Bloom filter, ~1.5% false candidates) rejects most of them with one gather before the
        binary search, which alone costs a cache miss per level.
        """
        if not len(self.keys) or not len(grams):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cand = np.flatnonzero(self.filter[grams & self.mask])
        k = np.minimum(np.searchsorted(self.keys, grams[cand]), len(self.keys) - 1)
        hit = self.keys[k] == grams[cand]
        return cand[hit], k[hit]

    def expand(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For key indices, (index into ``keys``, field ref) for every posting of every key."""
        counts = self.ptr[keys + 1] - self.ptr[keys]
        which = np.repeat(np.arange(len(keys)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return which, self.refs[np.repeat(self.ptr[keys], counts) + offsets]
