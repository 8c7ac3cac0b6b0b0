"""The mixture manifest: the data identity of every model trained on a mixture.

Its shape is read by :mod:`mixassets.engine.mixture_diff`, the provenance queries and the training manifests, so
it is built in one place. ``manifest_id`` hashes what a model trained on the mixture reads: the shard checksums
(which cover every row, its order, tokens and phase) and the phase order training follows. It is the data
version of ``mixture_manifest`` and part of every model's version, so it must not hash the spec text or the
upstream data versions: a spec edit or an upstream rerun that leaves the sampled rows byte-identical keeps the id,
and no model retrains on identical data (the spec and inputs are still recorded, for ``mixtrain mixture diff``).
``previous_manifest_id`` chains each manifest to the last *different* one, which is what ``mixtrain mixture diff``
compares by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from mixassets.engine.licenses import license_tags
from mixtrain.config.data import MixtureSpec
from mixtrain.identity import spec_hash

ID_FIELDS = ("shards", "phase_order")


def build_manifest(
    spec: MixtureSpec,
    mixture: pa.Table,
    composition: Mapping[str, Any],
    *,
    tokenizer: str,
    inputs: Mapping[str, str | None],
    input_partitions: Mapping[str, str],
    rules_version: Any,
    shards: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None = None,
    heldout: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a sampled mixture (``mixture`` and its ``composition`` from ``sample_mixture``), chained to
    ``previous``.

    ``shards`` are the parts of the stored mixture table (``path``, ``sha256``, ``rows``), the files a training
    job reads. ``heldout`` (documents per source and their ids' digest) says which documents were kept out of
    reach.
    """
    licenses = set(mixture.column("license").to_pylist()) if "license" in mixture.column_names else set()
    manifest: dict[str, Any] = {
        "mixture_id": spec.id,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec_hash(spec),
        "seed": spec.seed,
        "release_policy": spec.release_policy,
        "tokenizer": tokenizer,
        "inputs": dict(inputs),
        "input_partitions": dict(input_partitions),
        "rules_version": rules_version,
        "composition": dict(composition),
        "doc_ids_digest": composition.get("doc_ids_digest"),
        "phases": sorted(composition.get("phases", {})),
        # The curriculum order training follows; rows carry their phase, the order lives only in the spec.
        "phase_order": [phase.name for phase in spec.phases or []],
        "license_tags_present": sorted({t for lic in licenses for t in (license_tags(lic) or ())}),
        "shards": [dict(shard) for shard in shards],
        "heldout": dict(heldout or {}),
    }
    manifest["manifest_id"] = manifest_id(manifest)
    if previous is not None:
        same = previous.get("manifest_id") == manifest["manifest_id"]
        manifest["previous_manifest_id"] = previous.get("previous_manifest_id") if same else previous.get("manifest_id")
    return manifest


def manifest_id(manifest: Mapping[str, Any]) -> str:
    return spec_hash({k: manifest[k] for k in ID_FIELDS})
