"""Syne Tune 0.14.2's ``PASHARungSystem``, driven by recorded operations: the oracle of
``tests/orchestrator/test_pasha_vs_synetune.py``.

Run as a script with Syne Tune 0.14.2 first on ``sys.path`` (the project pins 0.16, which no
longer ships PASHA): reads a JSON list of sequences from stdin, writes one JSON list of
answers per sequence to stdout. Each sequence is ``{"levels", "max_t", "eta", "mode",
"promotion", "ops"}``; an op is

* ``["add", trial_id, milestone, resume_from]`` — ``on_task_add`` (a new trial when
  ``resume_from`` is null, else a promotion);
* ``["report", trial_id, epoch, value]`` — ``on_task_report``; answered with the rung
  system's ``[current_rung_idx, current_max_t, epsilon]`` after it;
* ``["schedule"]`` — ``on_task_schedule``; answered with ``[trial_id, milestone]`` or null.

``promotion`` is "shipped" (Syne Tune's own rule: any paused trial above the rung's
interpolated quantile) or "paper" (Li et al. 2020, kdsweep's ``promote``: the top
``len(rung) // eta`` of the rung). "paper" also iterates ``epoch_to_trials`` in sorted order,
so that each pair counts once towards ε as ``seen_pairs`` intends (Syne Tune iterates a set of
strings, whose order follows ``PYTHONHASHSEED``). Nothing else of Syne Tune's code is changed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from syne_tune.optimizer.schedulers.legacy_hyperband_pasha import PASHARungSystem


class _SortedSet(set):  # type: ignore[type-arg]
    """A set that iterates in sorted order."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(set.__iter__(self)))


class _Paper(PASHARungSystem):
    """Syne Tune's PASHA with ASHA's paper promotion rule and each pair counted once."""

    eta = 3

    def _find_promotable_trial(self, rung):  # type: ignore[no-untyped-def]
        quota = len(rung) // self.eta
        for pos, entry in enumerate(rung.data):
            if pos >= quota:
                return None
            if self._is_promotable_trial(entry, rung.level):
                return entry.trial_id, pos
        return None

    def _update_per_epoch_results(self, trial_id, result):  # type: ignore[no-untyped-def]
        super()._update_per_epoch_results(trial_id, result)
        for epoch, trials in self.epoch_to_trials.items():
            if not isinstance(trials, _SortedSet):
                self.epoch_to_trials[epoch] = _SortedSet(trials)


def run(sequence: dict[str, Any]) -> list[Any]:
    cls = _Paper if sequence["promotion"] == "paper" else PASHARungSystem
    eta = sequence["eta"]
    levels = sequence["levels"]
    system = cls(levels, [1 / eta] * len(levels), "v", sequence["mode"], "epoch", sequence["max_t"])
    system.eta = eta
    answers: list[Any] = []
    for op in sequence["ops"]:
        if op[0] == "add":
            _, trial_id, milestone, resume_from = op
            if resume_from is None:
                system.on_task_add(trial_id, 0, new_config=True)
            else:
                system.on_task_add(trial_id, 0, new_config=False, milestone=milestone, resume_from=resume_from)
        elif op[0] == "report":
            _, trial_id, epoch, value = op
            system.on_task_report(trial_id, {"epoch": epoch, "v": value}, 0)
            answers.append([system.current_rung_idx, system.current_max_t, float(system.epsilon)])
        else:
            job = system.on_task_schedule("new")
            answers.append([job["trial_id"], job["milestone"]] if "trial_id" in job else None)
    return answers


if __name__ == "__main__":
    print(json.dumps([run(s) for s in json.load(sys.stdin)]))
