"""The ``mixtrain`` command line: version and help, errors a person can act on, library warnings kept quiet,
``status`` creating no runs, and ``trace`` naming every stage's decision."""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import pyarrow as pa
import pytest
from upath import UPath

from mixtrain.cli import build_parser, library_warnings, main
from mixtrain.tables import PendingTable

REPO = Path(__file__).resolve().parents[1]


def test_version_is_printed_without_a_command():
    out = subprocess.run(
        [sys.executable, "-m", "mixtrain.cli", "--version"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mixtrain ") and "dagster 1." in out.stdout and "required" not in out.stderr


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "a command is required" in capsys.readouterr().err


def _parsers(parser) -> list:
    """The parser and every subcommand parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_command_and_argument_has_plain_help():
    parser = build_parser()
    assert "``" not in parser.format_help() and ":mod:" not in parser.format_help()
    names = set()
    for p in _parsers(parser):
        names.add(p.prog)
        assert p.description and "``" not in p.description, p.prog
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction):  # each choice carries its own help
                assert action.help, f"{p.prog}: {action.dest} has no help"
    assert {"mixtrain status", "mixtrain trace", "mixtrain review apply", "mixtrain mixture diff"} <= names


def test_a_directory_without_mixtrain_yaml_suggests_project_and_init(tmp_path, capsys):
    assert main(["trace", "abc", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'mixtrain.yaml'}: file not found" in err and "--project DIR" in err
    assert f"`mixtrain init {tmp_path}` writes a starter project there" in err
    assert main(["status", "--project", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err


def _warn_three() -> None:
    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning

    warnings.warn("beta api", BetaWarning, stacklevel=1)
    warnings.warn("preview api", PreviewWarning, stacklevel=1)
    warnings.warn("a user-facing warning", UserWarning, stacklevel=1)


def test_library_warnings_are_hidden_unless_verbose(capsys):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with library_warnings(verbose=False):
            _warn_three()
    assert [str(w.message) for w in seen] == ["a user-facing warning"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with library_warnings(verbose=True):  # shown on stderr, through logging (see _shown_on_stderr)
            _warn_three()
    err = capsys.readouterr().err
    assert "BetaWarning: beta api" in err and "PreviewWarning: preview api" in err and "a user-facing" in err
    assert build_parser().parse_args(["-v", "status"]).verbose
    assert build_parser().parse_args(["status", "-v"]).verbose
    assert not build_parser().parse_args(["status"]).verbose


# Loads the code location the way `run` and `status` do. A library imported on the way (detect-secrets) routes
# warnings into logging and silences them, so what counts is what reaches stderr.
LOAD_CODE_LOCATION = """
import sys, warnings
from mixtrain.cli import library_warnings
warnings.simplefilter("default")
with library_warnings(verbose=sys.argv[1] == "1"):
    import definitions
    import mixtrain.jobs, importlib
    importlib.reload(mixtrain.jobs)  # beta API at import: warns again, after detect-secrets is loaded
"""


@pytest.mark.parametrize("verbose", ["0", "1"])
def test_loading_the_code_location_is_quiet_unless_verbose(verbose):
    out = subprocess.run(
        [sys.executable, "-c", LOAD_CODE_LOCATION, verbose], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert ("BetaWarning" in out.stderr) == (verbose == "1"), out.stderr


def test_status_launches_no_run_and_records_nothing(project_dir, capsys):
    from mixtrain.instance import activate, open_instance

    project = activate(project_dir)
    (project_dir / "data").mkdir()
    for e in project.spec.eval_sets:  # the eval spec fingerprints its files; no source data is needed
        if e.path:
            (project_dir / e.path).write_text("")
    with open_instance(project) as instance:
        assert instance.get_runs_count() == 0
    assert main(["status", "--project", str(project_dir)]) == 0
    assert "MISSING  raw_documents[pydoc_topics]" in capsys.readouterr().out
    with open_instance(project) as instance:
        assert instance.get_runs_count() == 0
        assert instance.get_dynamic_partitions("sources") == []  # not even the partitions are synced


# -- trace over a hand-built storage root: one document per fate ----------------------------------------------


def _commit(root: Path, key: str, rows: list[dict], partition: str | None = None) -> None:
    location = UPath(root) / key / partition if partition else UPath(root) / key
    PendingTable.of(pa.Table.from_pylist(rows)).commit(location)


def _doc(doc_id: str) -> dict:
    return {"doc_id": doc_id, "source_id": "forum", "locator": f"data/forum.jsonl:{doc_id[-1]}", "text": "t"}


@pytest.fixture
def traced_project(project_dir) -> Path:
    """Documents a..d in source 'forum': a quarantined by the gate, b dropped as a duplicate of c, d removed by
    the contamination screen, c kept through the mixture."""
    root = project_dir / "storage"
    ids = {x: f"{x * 19}{i}" for i, x in enumerate("abcd")}
    _commit(root, "raw_documents", [_doc(i) for i in ids.values()], "forum")
    _commit(root, "gated_documents", [_doc(ids[x]) for x in "bcd"], "forum")
    _commit(
        root,
        "quarantine",
        [{"doc_id": ids["a"], "disposition": "quarantined", "rule_id": "safety.lexicon", "reason": "toxicity 31.0"}],
        "forum",
    )
    _commit(
        root,
        "decision_log",
        [
            {"doc_id": ids["a"], "rule_id": "safety.lexicon", "action": "quarantine", "span_start": None},
            {"doc_id": ids["c"], "rule_id": "pii.email", "action": "redact", "span_start": 3},
        ],
        "forum",
    )
    cluster = {"cluster_id": f"forum/{ids['c']}", "doc_id": ids["b"], "source_id": "forum"}
    cluster |= {"kept_doc_id": ids["c"], "kept_source_id": "forum", "match_type": "near"}
    cluster |= {"estimated_jaccard": 0.9, "exact_jaccard": 0.88, "action": "dropped"}
    _commit(root, "dedupe_clusters", [cluster])
    _commit(root, "deduplicated_corpus", [_doc(ids[x]) for x in "cd"])
    finding = {"doc_id": ids["d"], "source_id": "forum", "eval_set": "signatures", "item_id": "sig-7"}
    finding |= {"field": "prompt", "kind": "holdout", "match_type": "ngram13", "overlap_text": "x", "score": 0.93}
    _commit(root, "contamination_findings", [finding])
    _commit(root, "contaminated_documents", [_doc(ids["d"])])
    _commit(root, "screened_corpus", [_doc(ids["c"])])
    _commit(root, "mixture", [{**_doc(ids["c"]), "domain": "general", "phase": None}] * 2)
    (root / "mixture_manifest.json").write_text('{"mixture_id": "main", "manifest_id": "m-1"}')
    return project_dir


def _trace(project: Path, doc_id: str, capsys) -> tuple[int, str, str]:
    code = main(["trace", doc_id, "--project", str(project)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _stages(out: str) -> dict[str, str]:
    lines = out.split("\ndetails:")[0].splitlines()[1:]
    return {line[:24].strip(): line[24:].strip() for line in lines}


def test_trace_names_the_stage_that_removed_a_document(traced_project, capsys):
    code, out, _ = _trace(traced_project, "d" * 19 + "3", capsys)
    stages = _stages(out)
    assert code == 0 and stages["gating"].startswith("accepted")
    assert stages["dedupe"] == "kept         no duplicate found"
    assert stages["contamination screen"].startswith("removed      contaminated: signatures/sig-7 field 'prompt'")
    assert "by ngram13, score 0.93" in stages["contamination screen"]
    assert stages["mixture"] == "not reached  removed at contamination screen"
    assert "accepted: True" not in out

    stages = _stages(_trace(traced_project, "b" * 19 + "1", capsys)[1])
    assert stages["dedupe"].startswith("removed      near duplicate of " + "c" * 19 + "2 (forum), Jaccard 0.88")
    assert stages["contamination screen"] == "not reached  removed at dedupe"

    stages = _stages(_trace(traced_project, "a" * 19 + "0", capsys)[1])
    assert stages["capture"] == "read         forum at data/forum.jsonl:0"
    assert stages["gating"] == "removed      quarantined by safety.lexicon: toxicity 31.0"

    stages = _stages(_trace(traced_project, "c" * 19 + "2", capsys)[1])
    assert stages["gating"] == "accepted     into the gated corpus, after pii.email (redact)"
    assert stages["dedupe"].startswith("kept         keeper of a cluster: 1 duplicate(s)")
    assert stages["contamination screen"] == "kept         clean"
    assert stages["mixture"].startswith("used         2 occurrence(s)")


def test_trace_of_an_unknown_id_fails_with_close_matches(traced_project, capsys):
    code, out, err = _trace(traced_project, "d" * 12, capsys)  # a truncated paste
    assert code == 1 and out == ""
    assert "no document 'dddddddddddd' among the 4 documents stored" in err and "d" * 19 + "3" in err
    code, _, err = _trace(traced_project, "c" * 19 + "9", capsys)  # one digit wrong
    assert code == 1 and "close matches: " + "c" * 19 + "2" in err
    code, _, err = _trace(traced_project, "zzzz", capsys)
    assert code == 1 and "close matches" not in err


def test_trace_of_a_captured_document_says_which_stages_are_pending(project_dir, capsys):
    _commit(project_dir / "storage", "raw_documents", [_doc("e" * 20)], "forum")
    stages = _stages(_trace(project_dir, "e" * 20, capsys)[1])
    assert stages["gating"] == "pending      gating has not run for forum yet"
    assert stages["dedupe"] == "pending      dedupe has not run yet" and stages["mixture"].startswith("pending")


def test_trace_before_any_run_says_so(project_dir, capsys):
    code, _, err = _trace(project_dir, "0123456789abcdef0123", capsys)
    assert code == 1 and "no documents stored" in err and "mixtrain run" in err


def test_a_misspelt_source_id_gets_a_suggestion(project_dir, capsys):
    assert main(["impact", "web_crawel", "--project", str(project_dir)]) == 2
    assert "unknown source 'web_crawel' (did you mean 'web_crawl'?)" in capsys.readouterr().err
    assert main(["revoke", "web_crawel", "--reason", "typo", "--project", str(project_dir)]) == 2
    assert "(did you mean 'web_crawl'?)" in capsys.readouterr().err
    assert not (project_dir / "revocations").exists()
