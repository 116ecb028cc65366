"""A trainer with closed-form, seeded learning curves: no data, no GPU, no torch.

It goes through the very same contract as the KD trainers, so the engine (driver, ASHA,
store, backends, resume, retries) is exercised end to end at scale — 1500 trials and dozens
of workers — on a laptop. The curve of a configuration is

    acc(e) = a_inf − (a_inf − 0.1) · exp(−e / tau) + noise(seed, e)

where ``a_inf`` peaks near lr = 0.05, momentum = 0.9 and grows with width, and ``tau``
shrinks as lr grows (``decoy``, any value, changes nothing: the known null against which
the report's parameter importances are tested). Fast starters are not always the best
finishers, which is what makes early stopping a real decision. ``noise`` is a Gaussian
drawn from a generator seeded by (trial seed, epoch), so a curve is a pure function of
(params, seed, epoch): resuming from a checkpoint reproduces exactly what an uninterrupted
run reports.

A second metric, ``latency_s``, trades off against accuracy for multi-objective sweeps: the
inference latency of a model ``width`` wide, ``LATENCY_S_PER_UNIT · width`` seconds times a
log-normal measurement factor (σ = ``LATENCY_NOISE``) drawn once from the trial's seed. Wider
is more accurate and slower, so no width wins both; like a real student's latency it depends
on the architecture alone, and is the same at every epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from kdsweep.trainers.base import TrainerSpec, Training, TrialContext


#: Seconds of inference latency per unit of ``width`` (16 wide: 1.6 ms).
LATENCY_S_PER_UNIT = 1e-4
#: σ of the log-normal measurement noise on ``latency_s``: a constant, not a setting, so that
#: the settings (and the hash) of synthetic sweeps made before latency existed are unchanged.
LATENCY_NOISE = 0.05

#: The longest epoch ``sleep_s`` (real) and ``epoch_s`` (virtual) may stand for: a week, longer
#: than any real training's epoch, so a larger value is a typo. time.sleep itself refuses more
#: than about 9.2e9 s (OverflowError: every trial would fail).
MAX_EPOCH_S = 7 * 86_400.0

#: The largest ``epoch_s_spread``: epoch_s · exp(σ·g) must stay a float for the largest g that
#: random.gauss draws (about 8.6, from its 53-bit uniforms), which fails near σ = 80 (measured:
#: σ = 1000 made ``kdsweep simulate`` fail with OverflowError); σ = 10 already spreads trials by
#: a factor of e^10 at one standard deviation, far beyond any cluster.
MAX_EPOCH_S_SPREAD = 10.0


class InjectedCrash(RuntimeError):
    """Raised by ``crash_mode = "exception"``: a fault the tests inject on purpose."""


@dataclasses.dataclass(frozen=True)
class SyntheticSettings:
    #: Seconds slept per epoch, standing in for training time.
    sleep_s: float = 0.0
    #: ``kdsweep simulate`` only: the median virtual seconds one epoch takes.
    epoch_s: float = 60.0
    #: ``kdsweep simulate`` only: the log-normal spread (σ) of a trial's epoch time around
    #: ``epoch_s``, drawn once per trial from its seed, so that trials of different sizes
    #: overlap as they do on a cluster. 0: every epoch takes ``epoch_s``.
    epoch_s_spread: float = 0.5
    #: Standard deviation of the per-epoch Gaussian noise on accuracy.
    noise_std: float = 0.01
    #: Crash while training this epoch (0: never), to test retries and fault handling.
    crash_at_epoch: int = 0
    #: Crash only in the first this-many attempts, so a retry can succeed.
    crash_attempts: int = 1
    #: "exception" raises; "exit" kills the worker process as a segfault or OOM-kill would.
    crash_mode: Literal["exception", "exit"] = "exception"
    #: A configuration with ``lr`` at or above this diverges: from its second epoch on it
    #: reports NaN for every loss and accuracy, as a real training whose loss blew up does
    #: (the worker then ends it as ``diverged``). None: no configuration diverges.
    diverge_lr: float | None = None
    #: Proposals with ``width`` above this are untrainable (``check_params`` rejects them), as
    #: an all-zero student or a frozen target node is for the real trainers; None: no limit.
    max_width: float | None = None


class Synthetic(TrainerSpec):
    """The synthetic trainer's description: its settings, metrics and checks (no torch)."""

    Settings: ClassVar[type] = SyntheticSettings
    training: ClassVar[str] = "kdsweep.trainers.synthetic:SyntheticTrainer"

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        return ("train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "latency_s")

    @classmethod
    def validate(cls, settings: SyntheticSettings, data: None, space: Sequence[Any], objective: None) -> list[tuple[str, object, str]]:
        """Ranges of the settings (the config loader reports each with its field)."""
        issues: list[tuple[str, object, str]] = []
        if settings.noise_std < 0:
            issues.append(("settings.noise_std", settings.noise_std, "a number >= 0"))
        if not 0 <= settings.sleep_s <= MAX_EPOCH_S:
            issues.append(("settings.sleep_s", settings.sleep_s, f"a number >= 0 and <= {MAX_EPOCH_S:g} (seconds: a week)"))
        if not 0 <= settings.epoch_s_spread <= MAX_EPOCH_S_SPREAD:
            issues.append(("settings.epoch_s_spread", settings.epoch_s_spread, f"a number >= 0 and <= {MAX_EPOCH_S_SPREAD:g} (the log-normal σ of epoch times)"))
        if settings.diverge_lr is not None and not settings.diverge_lr > 0:
            issues.append(("settings.diverge_lr", settings.diverge_lr, "a number > 0 (the lr at and above which trials diverge), or leave it out"))
        if not 0 < settings.epoch_s <= MAX_EPOCH_S:
            issues.append(("settings.epoch_s", settings.epoch_s, f"a number > 0 and <= {MAX_EPOCH_S:g} (virtual seconds: a week)"))
        for name in ("crash_at_epoch", "crash_attempts"):
            if getattr(settings, name) < 0:
                issues.append((f"settings.{name}", getattr(settings, name), "an integer >= 0"))
        return issues

    @classmethod
    def check_params(cls, params: Mapping[str, Any], settings: SyntheticSettings) -> str | None:
        width = float(params.get("width", 64))
        if settings.max_width is not None and width > settings.max_width:
            return f"width {width:g} exceeds settings.max_width {settings.max_width:g}"
        return None



def _loss(acc: float) -> float:
    """The loss reported beside an accuracy (NaN for a diverged one)."""
    return -math.log(max(1e-6, acc)) if not math.isnan(acc) else math.nan


class SyntheticTrainer(Training):
    """Closed-form learning curves over ``lr``, ``momentum`` and ``width`` (all optional), and
    a latency that grows with ``width``; any
    other parameter, such as ``decoy`` in ``synthetic.toml``, is accepted and has no effect."""

    def __init__(self, params: Mapping[str, Any], settings: SyntheticSettings, ctx: TrialContext) -> None:
        self.settings = settings
        self.ctx = ctx
        lr = float(params.get("lr", 0.05))
        momentum = float(params.get("momentum", 0.9))
        width = float(params.get("width", 64))
        if lr <= 0 or width <= 0:
            raise ValueError(f"synthetic trainer needs lr > 0 and width > 0, got lr={lr}, width={width}")
        lr_gap = math.log10(lr / 0.05)
        self.a_inf = 0.97 - 0.06 * lr_gap**2 - 0.15 * abs(momentum - 0.9) - 0.04 / math.sqrt(width / 16)
        self.tau = 6.0 / (1.0 + 3.0 * max(0.0, lr_gap + 2.0))
        noise = random.Random(f"{ctx.seed}:latency").gauss(0.0, LATENCY_NOISE)
        self.latency_s = LATENCY_S_PER_UNIT * width * math.exp(noise)
        self.diverges = settings.diverge_lr is not None and lr >= settings.diverge_lr
        self.epoch = 0

    def _accuracy(self, epoch: int, stream: int) -> float:
        if self.diverges and epoch >= 2:
            return math.nan
        rng = random.Random(f"{self.ctx.seed}:{epoch}:{stream}")
        mean = self.a_inf - (self.a_inf - 0.1) * math.exp(-epoch / self.tau)
        return min(1.0, max(0.0, mean + rng.gauss(0.0, self.settings.noise_std)))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        s = self.settings
        if epoch == s.crash_at_epoch and self.ctx.attempt < s.crash_attempts:
            if s.crash_mode == "exit":
                os._exit(17)
            raise InjectedCrash(f"injected crash at epoch {epoch} (attempt {self.ctx.attempt})")
        if s.sleep_s > 0:
            time.sleep(s.sleep_s)
        self.epoch = epoch
        return {"train_loss": _loss(self._accuracy(epoch, 1))}

    def evaluate(self) -> dict[str, float]:
        acc = self._accuracy(self.epoch, 0)
        return {"val_acc": acc, "val_loss": _loss(acc), "latency_s": self.latency_s}

    def test(self) -> dict[str, float]:
        acc = self._accuracy(self.epoch, 2)  # the same curve, an independent noise draw
        return {"test_acc": acc, "test_loss": _loss(acc)}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
