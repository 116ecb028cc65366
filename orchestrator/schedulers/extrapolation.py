"""ASHA on where a trial's curve is going, not where it is: ``[asha] extrapolate = true``.

At each rung milestone below the top one the worker predicts the trial's value at the top
rung (``max_epochs`` when the ladder reaches it; the last milestone below it otherwise, the
last point any trial is judged at) from its curve so far (``curves.predict``: a small
ensemble of Domhan et al.'s parametric families) and records the prediction on its report
row (``schema.PREDICTED``, ``PREDICTED_STD``, in the metric's own units). A trial goes on —
the stop variant does not stop it, the promote variant may promote it — while

    P(its value at the top rung ≥ cut) ≥ asha.extrapolate_chance

where ``cut`` is the higher of two top-1/η cutoffs (``asha.cutoff``, Ray Tune's quantile):

* among the rung's other trials, each by its value at the top rung: the recorded one for a
  trial that got there, else its prediction at this rung;
* once η trials have reached the top rung, among the values recorded there.

So a trial below ASHA's cut whose curve still rises towards the top goes on, and one above it
whose curve has flattened below what finished trials reached stops. The second cutoff is what
saves epochs over ASHA: the first alone keeps about 1/η of a rung, as ASHA does. A curve of
fewer than ``curves.MIN_POINTS`` reports (rung 0 with ``min_epochs`` below 4, or
``eval_every_epochs`` thinning it) has no prediction, and ASHA's own rule decides there.

Decisions read the predictions from the store and never recompute them, so a resumed driver,
a replay and the report see the numbers the worker acted on. One objective, one bracket
(``problems``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.asha import Decision, RungValue
from kdsweep.orchestrator.curves import Prediction, predict
from kdsweep.orchestrator.schedulers.asha_promote import AshaPromote
from kdsweep.orchestrator.schedulers.asha_stop import AshaStop
from kdsweep.orchestrator.schema import PREDICTED, PREDICTED_STD

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import AshaConfig
    from kdsweep.orchestrator.store import Store

class Rule:
    """The extrapolating rule of one sweep's ``[asha]`` (module docstring), over signed values
    (larger is better)."""

    def __init__(self, config: AshaConfig) -> None:
        self.metric = config.metric
        self.sign = 1.0 if config.mode == "max" else -1.0
        self.horizon = asha.rung_ladder(config.min_epochs, config.max_epochs, config.reduction_factor)[-1]
        self.eta = config.reduction_factor
        self.chance = config.extrapolate_chance

    def columns(self, store: Store, trial_id: str, epoch: int, value: float) -> dict[str, float]:
        """The prediction to record on ``trial_id``'s report of ``value`` at ``epoch`` (its
        earlier reports are in ``store``); empty for a curve too short to extrapolate."""
        if epoch >= self.horizon:
            return {}  # the top rung itself: nothing left to predict, ASHA's rule decides
        curve = [(e, v) for e, v in store.curve(trial_id, self.metric) if e < epoch] + [(epoch, value)]
        prediction = predict([(e, self.sign * v) for e, v in curve], self.horizon)
        if prediction is None:
            return {}
        return {PREDICTED: self.sign * prediction.mean, PREDICTED_STD: prediction.std}

    def goes_on(self, trial_id: str, prediction: Prediction, rung: Mapping[str, float], predicted: Mapping[str, float], finals: Mapping[str, float]) -> bool:
        """Whether ``trial_id``, whose signed ``prediction`` was made at a rung where the
        trials recorded the signed values ``rung`` and predictions ``predicted``, goes on;
        ``finals``: the signed values recorded at the top rung. Pure."""
        population = [finals.get(t, predicted.get(t, v)) for t, v in rung.items() if t != trial_id]
        cuts = [asha.cutoff(population, self.eta)]
        if len(finals) >= self.eta:
            cuts.append(asha.cutoff(finals.values(), self.eta))
        known = [c for c in cuts if c is not None]
        return not known or prediction.chance_above(max(known)) >= self.chance

    def values(self, store: Store, rung: int) -> dict[str, float]:
        """The signed values the trials recorded at ``rung``."""
        return {t: self.sign * v for t, v in store.rung_values(rung, self.metric).items()}

    def predictions(self, store: Store, rung: int) -> dict[str, Prediction]:
        """The signed predictions the trials recorded at ``rung``."""
        stds = store.rung_values(rung, PREDICTED_STD)
        return {t: Prediction(self.sign * m, stds.get(t, 0.0)) for t, m in store.rung_values(rung, PREDICTED).items()}


class _Extrapolating:
    """What both curve-aware variants share: the rule, what they refuse, what they record."""

    ladder: tuple[int, ...]

    def __init__(self, config: AshaConfig, seed: int) -> None:
        super().__init__(config, seed)  # type: ignore[call-arg]  # the ASHA variant's, next in the MRO
        self.rule = Rule(config)

    @classmethod
    def problems(cls, config: AshaConfig) -> list[tuple[str, object, str]]:
        out: list[tuple[str, object, str]] = []
        if config.multi_objective:
            out.append(("extrapolate", True, "false with several asha.objectives (a prediction is of one metric)"))
        if config.brackets != 1:
            out.append(("brackets", config.brackets, "1 with asha.extrapolate = true"))
        return out

    def rung_columns(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> dict[str, float]:
        return self.rule.columns(store, trial_id, self.ladder[rung], point[0])


class ExtrapolatingStop(_Extrapolating, AshaStop):
    """The ``stop`` variant deciding on predicted curves (module docstring)."""

    def on_result(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> Decision:
        predictions = self.rule.predictions(store, rung)
        mine = predictions.get(trial_id)
        if mine is None:
            return super().on_result(store, trial_id, rung, point)
        predicted = {t: p.mean for t, p in predictions.items()}
        top = self.rule.values(store, len(self.ladder) - 1)
        return Decision.CONTINUE if self.rule.goes_on(trial_id, mine, self.rule.values(store, rung), predicted, top) else Decision.STOP


class ExtrapolatingPromote(_Extrapolating, AshaPromote):
    """The ``promote`` variant promoting on predicted curves (module docstring): at a rung
    with predictions, the paused trial with the highest predicted value among those that go
    on, once the rung holds η trials; at a rung without, ASHA's top 1/η."""

    def __init__(self, config: AshaConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.predictions: list[dict[str, Prediction]] = [{} for _ in self.ladder]

    def observe(self, store: Store, progress: Mapping[str, int]) -> None:
        self.predictions = [self.rule.predictions(store, k) for k in range(len(self.ladder))]

    def restore(self, store: Store, state: Mapping[str, Any] | None) -> None:
        self.observe(store, {})  # the predictions recorded so far: the report decides from them too

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        a = self.config
        signed = [{t: self.rule.sign * _scalar(v) for t, v in values.items()} for values in rungs]
        for k in range(len(rungs) - 2, -1, -1):
            if not self.predictions[k]:
                chosen = asha.promotable(rungs[k], promoted[k], a.reduction_factor, a.modes, busy)
            else:
                chosen = self._best(signed[k], self.predictions[k], signed[-1], promoted[k], busy)
            if chosen is not None:
                return chosen, self.ladder[k + 1]
        return None

    def _best(self, values: Mapping[str, float], predictions: Mapping[str, Prediction], finals: Mapping[str, float], promoted: Set[str], busy: Set[str]) -> str | None:
        if len(values) < self.rule.eta:
            return None
        means = {t: p.mean for t, p in predictions.items()}
        waiting = [t for t in sorted(predictions) if t in values and t not in promoted and t not in busy]
        going = [t for t in waiting if self.rule.goes_on(t, predictions[t], values, means, finals)]
        return max(going, key=lambda t: means[t], default=None)


def _scalar(value: RungValue) -> float:
    return float(value) if isinstance(value, (int, float)) else float(value[0])
