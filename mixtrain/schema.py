"""Arrow schemas shared by every stage.

One place defines the columns so that the engine, the IO manager, DuckDB users and the tests agree on
what a document, a decision or a finding is. Columns are flat and typed so a table written here can be
read by pyarrow, pandas or DuckDB without mixtrain installed.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

# How every parquet file of the project is written, whole or batch by batch (``ParquetWriter``): part of the
# table format, like the schemas below, so engines that write parts directly agree with the IO manager.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True, "store_schema": True}

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
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

# Documents that did not make it into the gated corpus, with the first reason that held them.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("disposition", pa.string(), nullable=False),  # "quarantined" | "rejected"
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("text", pa.string()),  # may be null when the bytes could not be decoded
        pa.field("raw", pa.binary()),  # the undecodable / malformed bytes, kept for review
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
    ]
)

DEDUPE_CLUSTER_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),  # "<kept_source_id>/<kept_doc_id>" of the cluster's keeper
        pa.field("doc_id", pa.string(), nullable=False),  # a non-keeper member of the cluster
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("kept_doc_id", pa.string(), nullable=False),  # the keeper it duplicated
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
        pa.field("screen_fields", pa.string(), nullable=False),  # JSON {field_name: text} to decontaminate
        pa.field("metadata", pa.string()),  # JSON, task specific (e.g. the schema of the answer)
        pa.field("checksum", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
