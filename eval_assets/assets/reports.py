"""Evaluation of the base, every candidate the project trains (``engine.candidates.project_candidates``) and the
live release on the configured suites, item by item, and the comparisons: each candidate with the base, and the
release gate's candidate with the live model (``engine.live``), with bootstrap intervals per slice."""

from collections.abc import Sequence

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, multi_asset

from eval_assets.assets.live import LiveModel, live_model, reuse_base
from eval_assets.assets.wiring import GROUP, candidate_ins, log_progress, model_in, run_outputs
from eval_assets.engine.candidates import BASELINE, Candidate, candidate_models
from eval_assets.engine.comparison import run_evaluation
from eval_assets.engine.live import LIVE, gate_baseline, run_fingerprint
from eval_assets.engine.reporting import eval_settings, gate_headline, reported_metrics, suite_items
from mixtrain.automation import changed_out
from mixtrain.release import current_release
from mixtrain.resources import ProjectResource


def eval_report_asset(candidates: Sequence[Candidate]) -> AssetsDefinition:
    """``eval_report`` and ``eval_comparison`` over ``candidates``: built per project, so a project that trains no
    student has a report that neither reads nor waits for one."""

    @multi_asset(
        outs={
            "eval_report": changed_out(
                "eval-3", "Every candidate's (and the live release's) output and scores per item, suite and slice."
            ),
            "eval_comparison": changed_out(
                "eval-3",
                "Each candidate vs the base, and the release candidate vs the live release, per metric and slice, "
                "with paired bootstrap intervals.",
            ),
        },
        ins={
            "eval_registry": AssetIn(),
            "heldout_text": AssetIn(),
            "base_model": model_in(),
            "base_eval": AssetIn(),
            **candidate_ins(candidates),
        },
        deps=["eval_spec"],
        group_name=GROUP,
    )
    def eval_report(
        context: AssetExecutionContext,
        project: ProjectResource,
        eval_registry: pa.Table,
        heldout_text: pa.Table,
        base_model: dict,
        base_eval: pa.Table,
        **trained: dict,
    ):
        proj = project.load()
        cfg = proj.spec
        models, identities = candidate_models(base_model, candidates, trained, proj.storage_root)
        items = suite_items(cfg.evaluation.suites, cfg.eval_sets, eval_registry, heldout_text)
        settings = eval_settings(cfg.evaluation)
        fingerprint = run_fingerprint(items, settings)
        release = current_release(proj.storage_root)
        baseline = gate_baseline(release)
        reused = reuse_base(models, base_eval, fingerprint)
        live, pairs = LiveModel(), None
        if release is not None:
            live = live_model(proj, release, fingerprint)
            models.update(live.dirs)
            identities[LIVE] = live.identity
            pairs = [*((c.name, BASELINE) for c in candidates), (cfg.release_gate.candidate, LIVE)]
            context.log.info(f"release gate baseline: {baseline.model} (live); {live.how}")
        run = run_evaluation(
            models,
            BASELINE,
            items,
            settings,
            identities=identities,
            reused={**reused, **live.reused},
            pairs=pairs,
            on_progress=log_progress(context),
        )
        run.record.update(
            fingerprint=fingerprint,
            gate_baseline={
                "label": baseline.label,
                "model": baseline.model,
                "why": baseline.why,
                "live": live.how or None,
            },
        )
        headline = gate_headline(run, cfg.release_gate, baseline.label, baseline.model)
        yield from run_outputs(run, "eval_report", "eval_comparison", headline, reported_metrics(run))

    return eval_report
