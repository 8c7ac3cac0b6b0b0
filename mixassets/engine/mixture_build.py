"""Building a mixture from the screened corpus: the release policy, the held-out documents, then the sample.

Why a module: the sampler (:mod:`mixassets.engine.mixture`) draws from documents it is told it may use; which
ones those are (policy-allowed, not held out) and what is reported about the result is decided here, once, so
the asset only wires storage to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine.heldout import heldout_mask, heldout_table
from mixassets.engine.licenses import policy_allows
from mixassets.engine.mixture import doc_ids_digest, sample_mixture
from mixtrain.config.data import MixtureSpec


@dataclass(frozen=True)
class MixtureBuild:
    """A sampled mixture, its composition (``sample_mixture``'s stats, stored in the manifest as
    ``composition``), and the documents held out of reach with their record (``heldout`` in the manifest)."""

    table: pa.Table
    composition: dict[str, Any]
    heldout: pa.Table
    heldout_record: dict[str, Any]

    def metadata(self) -> dict[str, int | float]:
        per_source = self.composition.get("sources", {})
        return {
            "documents": self.table.num_rows,
            "tokens": int(sum(self.table.column("tokens").to_pylist())),
            **{f"share/{s}": round(float(v.get("effective_weight", 0.0)), 4) for s, v in per_source.items()},
            **{f"tokens/{s}": int(v.get("tokens", 0)) for s, v in per_source.items()},
            **{f"excluded_by_policy/{s}": int(v.get("excluded_by_policy", 0)) for s, v in per_source.items()},
        }

    def heldout_metadata(self) -> dict[str, int]:
        return {"documents": self.heldout.num_rows, **{f"docs/{s}": n for s, n in self.heldout_record["docs"].items()}}


def build_mixture(corpus: pa.Table, token_counts: Sequence[int], spec: MixtureSpec) -> MixtureBuild:
    """Hold out ``spec.heldout_docs`` policy-allowed documents per source, then sample the rest."""
    allowed = [policy_allows(lic, spec.release_policy) for lic in corpus.column("license").to_pylist()]
    held = heldout_mask(corpus, spec.heldout_docs, spec.seed, allowed=allowed)
    heldout = heldout_table(corpus, held, spec.seed)
    rest = ~held
    table, composition = sample_mixture(
        corpus.filter(pa.array(rest)),
        np.asarray(token_counts)[rest].tolist(),
        spec,
        allowed=np.asarray(allowed, dtype=bool)[rest].tolist(),
    )
    heldout_record = {
        "docs": dict(sorted(Counter(heldout.column("source_id").to_pylist()).items())),
        "doc_ids_digest": doc_ids_digest(heldout.column("doc_id").to_pylist()),
    }
    return MixtureBuild(table, composition, heldout, heldout_record)
