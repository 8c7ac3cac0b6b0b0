"""Arrow schemas shared by every stage.

One place defines the columns so that the engine, the IO manager, DuckDB users and the tests agree on
what a document, a decision or a finding is. Columns are flat and typed so a table written here can be
read by pyarrow, pandas or DuckDB without mixtrain installed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# How every parquet file of the project is written, whole or batch by batch (``ParquetWriter``): part of the
# table format, like the schemas below, so engines that write parts directly agree with the IO manager.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True, "store_schema": True}

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("row_id", pa.int64()),  # set at ingest from doc_id (see row_ids_for); joins carry it, not positions
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),  # "<file>:<line>" or "<file>#row=<n>" or "<file>"
        pa.field("kind", pa.string(), nullable=False),  # "text" | "chat"
        pa.field("text", pa.string(), nullable=False),  # for chat: message contents joined by blank lines
        pa.field("messages", pa.string()),  # chat only: JSON list of {"role","content"}
        pa.field("license", pa.string()),  # SPDX expression as declared by the source
        pa.field("rights_tags", pa.list_(pa.string())),
        pa.field("attribution", pa.string()),  # attribution text the license requires, carried with the doc
        pa.field("domain", pa.string()),
        pa.field("language", pa.string()),
        pa.field("capture_time", pa.timestamp("us", tz="UTC")),
    ]
)


def row_ids_for(doc_ids: pa.Array | pa.ChunkedArray) -> pa.Int64Array:
    """The int64 row id of each document: the first 64 bits of its doc_id (hex of sha256(source, locator)).

    Why derived rather than numbered: every stage and every worker computes the same id from the document
    alone, with no counter to coordinate, so shuffles and joins on Ray carry an 8-byte key instead of a
    string. 64 bits make a collision unlikely (≈3e-4 at 10^8 documents, ≈3% at 10^9); the dedupe stage,
    which sees every id at once, checks that they are unique. An id that is not mixtrain's hex (a table made
    elsewhere) is hashed first, so it still gets a stable row id."""
    ids = doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids
    if len(ids) == 0:
        return pa.array([], pa.int64())
    ids = pc.fill_null(ids.cast(pa.string()), "")
    hexed = pc.match_substring_regex(ids, "^[0-9a-f]{20}$")  # mixtrain's own doc ids, exactly
    if not pc.all(hexed).as_py():
        pairs = zip(ids.to_pylist(), hexed.to_pylist(), strict=True)
        ids = pa.array([v if h else hashlib.sha256(v.encode()).hexdigest() for v, h in pairs])
    raw = bytes.fromhex("".join(pc.utf8_slice_codeunits(ids, 0, 16).to_pylist()))
    return pa.array(np.frombuffer(raw, dtype=">i8").astype(np.int64))


def with_row_ids(docs: pa.Table) -> pa.Table:
    """``docs`` with ``row_id`` filled from ``doc_id`` where it is missing or null (tables built before ingest
    assigned it, or by hand in tests)."""
    if "row_id" in docs.column_names and docs.column("row_id").null_count == 0:
        return docs
    ids = row_ids_for(docs.column("doc_id"))
    if "row_id" in docs.column_names:
        return docs.set_column(docs.column_names.index("row_id"), "row_id", ids)
    return docs.append_column("row_id", ids)


# Records as a reader hands them over when it cannot make a document of them: the line or bytes in clear. Held in
# memory only between the reader and the vault (mixassets.engine.vault splits it into the two tables below); never
# stored as such, because every copy of a leaked key or address outside the vault is one more place it leaks from.
READ_FAILURE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("disposition", pa.string(), nullable=False),  # "quarantined"
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("text", pa.string()),  # null when the bytes could not be decoded
        pa.field("raw", pa.binary()),  # the undecodable / malformed bytes
    ]
)

# Documents that did not make it into the gated corpus, with the first reason that held them. A view: personal
# data and secrets in ``text`` and ``reason`` are tagged hashes (mixassets.engine.redaction), and the bytes of a
# record that could not be read are only described here (length, sha256); the clear copy is in the vault
# (VAULT_SCHEMA, same doc_id) or, for documents held by the gate, in raw_documents.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("disposition", pa.string(), nullable=False),  # "quarantined" | "rejected"
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("text", pa.string()),  # redacted; for undecodable bytes a redacted preview; null if nothing read
        pa.field("raw_bytes", pa.int64()),  # length of the record's bytes kept in the vault (null: none)
        pa.field("raw_sha256", pa.string()),  # hex sha256 of those bytes, to match them without holding them
    ]
)

# The clear copy of every record that could not be read, one row per raw_rejects row (same doc_id). Stored only
# under the storage root's vault/ prefix, which is readable by its owner alone (mixassets.engine.vault).
VAULT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # as the reader gave it, unredacted
        pa.field("text", pa.string()),
        pa.field("raw", pa.binary()),
        pa.field("raw_sha256", pa.string()),
    ]
)

# One row per rule that fired on a document (a document may have several rows).
DECISION_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("rule_version", pa.int32(), nullable=False),
        pa.field("action", pa.string(), nullable=False),  # "reject" | "quarantine" | "redact" | "strip" | "flag"
        pa.field("reason", pa.string(), nullable=False),
        pa.field("span_start", pa.int64()),  # character span of a hit (PII), never the raw value
        pa.field("span_end", pa.int64()),
        pa.field("score", pa.float64()),  # the measure a scored rule compared with its threshold; null otherwise
    ]
)

DEDUPE_CLUSTER_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),  # "<source_id>/<doc_id>" of the cluster's keeper
        pa.field("doc_id", pa.string(), nullable=False),  # a non-keeper member of the cluster
        pa.field("source_id", pa.string(), nullable=False),
        # the member it matched (the Jaccards are with it): the keeper, or a member linked to the keeper in turn
        pa.field("kept_doc_id", pa.string(), nullable=False),
        pa.field("kept_source_id", pa.string(), nullable=False),
        pa.field("match_type", pa.string(), nullable=False),  # "exact" | "near"
        pa.field("estimated_jaccard", pa.float64(), nullable=False),  # MinHash estimate (1.0 for exact)
        pa.field("exact_jaccard", pa.float64(), nullable=False),  # on the shingle sets (1.0 for exact)
        pa.field("action", pa.string(), nullable=False),  # "dropped" | "kept_capped" (cluster downsampling)
    ]
)

FINDING_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),  # which screened field of the item matched
        pa.field("kind", pa.string(), nullable=False),  # "holdout" (prompt/question) | "target" (answer/solution)
        pa.field("match_type", pa.string(), nullable=False),  # "ngram13" | "containment" | "jaccard"
        pa.field("overlap_text", pa.string(), nullable=False),
        pa.field("span_start", pa.int64()),  # character span of the overlap in the document's text
        pa.field("span_end", pa.int64()),
        pa.field("score", pa.float64(), nullable=False),  # share of the item's n-grams found in the doc
    ]
)

# Items of the eval registry: the text fields to screen and a checksum freeze each item.
EVAL_ITEM_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # what the model is shown
        pa.field("reference", pa.string(), nullable=False),  # the expected answer / solution
        pa.field("screen_fields", pa.string(), nullable=False),  # JSON {field_name: text or {stem, options, answer}}
        pa.field("metadata", pa.string()),  # JSON, task specific (e.g. the schema of the answer)
        pa.field("checksum", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
