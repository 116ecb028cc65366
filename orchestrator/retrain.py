"""The final stage: which runs ``kdsweep retrain`` makes of a finished (or running) sweep.

A search ranks configurations on a validation split under early stopping; what a paper
reports is each winner retrained for the full budget several times with fresh seeds and
measured once on the held-out test split. The plan is a list of final-stage trial records
(ids ``<source>.r<k>``), run by the same driver and backends as the search, so retries,
preemption and resume work the same; their rows carry ``stage = "final"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdsweep.orchestrator.config import MAX_EPOCHS, ConfigError, ConfigIssue
from kdsweep.orchestrator.rundir import RunDir, TrialRecord, final_id
from kdsweep.orchestrator.schema import Stage
from kdsweep.orchestrator.summary import RunSummary


def plan_final(
    run: RunDir, summary: RunSummary, *, top: int, trials: Sequence[str], repeats: int, epochs: int | None
) -> list[TrialRecord]:
    """Records for ``repeats`` runs of each of the ``top`` best search trials plus ``trials``
    (in that order, each configuration once), ``epochs`` each (default ``asha.max_epochs``).

    Raises ConfigError naming every bad argument: counts below 1, ``epochs`` above
    ``MAX_EPOCHS``, a trial id that is not a trained trial of this run, nothing selected, or
    ``epochs`` different from the budget of final runs already recorded under the same ids
    (resuming must not change the budget).
    """
    issues = []
    if top < 0:
        issues.append(ConfigIssue("command line", "--top", top, "an integer >= 0"))
    if repeats < 1:
        issues.append(ConfigIssue("command line", "--repeats", repeats, "an integer >= 1"))
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
        issues.append(ConfigIssue("command line", "--epochs", epochs, f"an integer from 1 to {MAX_EPOCHS}"))
    budget = epochs if epochs is not None else summary.cfg.asha.max_epochs
    trained = [t.trial_id for t in summary.trials if t.epochs > 0]
    for tid in trials:
        if tid not in trained:
            shown = ", ".join(trained[:8]) + (", ..." if len(trained) > 8 else "")
            issues.append(ConfigIssue("command line", "--trial", tid, f"a trial of this run that trained ({shown or 'none has yet'})"))
    sources = list(dict.fromkeys(trained[: max(0, top)] + [t for t in trials if t in trained]))
    if not sources and not issues:
        issues.append(ConfigIssue("command line", "--top/--trial", top, "select at least one trained trial (none has reported yet)" if not trained else "select at least one trial: --top K >= 1 or --trial ID"))
    records = run.read_trials(Stage.SEARCH.value, summary.cfg)
    existing = run.read_trials(Stage.FINAL.value, summary.cfg)
    plan = []
    for source in sources:
        for k in range(max(1, repeats)):
            tid = final_id(source, k)
            before = existing.get(tid)
            if before is not None and before.until_epoch != budget:
                issues.append(ConfigIssue("command line", "--epochs", budget, f"{before.until_epoch}: {tid} was already retrained for {before.until_epoch} epochs; its results would not be comparable"))
                break
            rec = records[source]
            plan.append(TrialRecord(tid, dict(rec.params), rec.origin, 0, budget, Stage.FINAL.value))
    if issues:
        raise ConfigError(issues)
    return plan
