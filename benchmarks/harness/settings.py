"""The fixed settings of a comparison: everything that must be equal for runs to share one results file.

:class:`Settings` (the task, the budget, the schedule, the machine's use) and :func:`check_settings`, which
refuses to add runs made with other settings to a results file, naming each difference and the remedy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from nni_nas_ext.core.config import Config, option

#: the validation split every contestant uses (issue 6: the same train/validation split for everyone)
VAL_FRACTION = 0.2
SPLIT_SEED = 0


def _datasets() -> list[str]:
    from nni_nas_ext.trial_code.datasets import list_datasets

    return list_datasets()


@dataclass(frozen=True)
class Settings(Config):
    """The fixed settings of a comparison: the task, the budget, the schedule, the machine's use.

    Contestants and seeds are not settings: a results file may gather more of them over several
    invocations, as long as these are equal.
    """

    config_name: ClassVar[str] = "compare"

    dataset: str = option("fashion-mnist", choices=_datasets(), doc="the task's dataset (local files only)")
    dataset_root: Optional[str] = option(None, doc="folder of the dataset's files; None: its default location")
    limit: Optional[int] = option(None, minimum=2, doc="use at most this many training-pool images (None: all)")
    val_fraction: float = option(VAL_FRACTION, minimum=0.01, maximum=0.5,
                                 doc="share of the training pool held out for validation (fixed)")
    split_seed: int = option(SPLIT_SEED, minimum=0, doc="seed of the validation split (fixed)")
    minutes: float = option(4.0, minimum=0.1, maximum=100_000.0,
                            doc="wall-clock budget of one (contestant, seed) run = maxExperimentDuration")
    epochs: int = option(2, minimum=1, maximum=100_000,
                         doc="epochs of every candidate's training, where a method has such a setting")
    seed_epochs: Optional[int] = option(None, minimum=0, maximum=100_000,
                                        doc="epochs of the seed network of the growing methods; None: --epochs")
    final_epochs: int = option(10, minimum=1, maximum=100_000,
                               doc="epochs of the common final training on train+val")
    batch_size: int = option(128, minimum=2, maximum=65_536, doc="SGD batch size")
    lr: float = option(0.05, minimum=1e-6, maximum=10.0, doc="start of the cosine cycle")
    lr_min: float = option(0.0, minimum=0.0, maximum=10.0, doc="end of the cosine cycle")
    momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum")
    weight_decay: float = option(5e-4, minimum=0.0, maximum=1.0, doc="L2 weight decay (not on biases or BN)")
    seed_widths: tuple[int, ...] = option((16, 32, 64), minimum=1, maximum=4096, non_empty=True,
                                          doc="widths of the NASH seed network's three convolutions")
    concurrency: int = option(2, minimum=1, maximum=1024, doc="trials running at once (trialConcurrency)")
    threads: int = option(1, minimum=1, maximum=1024, doc="torch threads per trial")
    final_threads: int = option(2, minimum=1, maximum=1024, doc="torch threads of the final trainings")
    device: str = option("auto", choices=["auto", "cpu", "cuda"], doc="auto: CUDA when there is a GPU")

    @property
    def budget_s(self) -> int:
        return max(1, round(self.minutes * 60))

    @property
    def candidate_seed_epochs(self) -> int:
        return self.epochs if self.seed_epochs is None else self.seed_epochs


class SettingsMismatch(ValueError):
    """A results file holds runs made with other fixed settings."""


def check_settings(stored: Mapping[str, Any], current: Settings, path: Path | str) -> None:
    """Refuse to add runs with ``current`` settings to a results file made with ``stored`` ones.

    Raises
    ------
    SettingsMismatch
        Naming every differing setting with both values, and the two remedies.
    """
    now = current.to_dict()
    keys = sorted(set(stored) | set(now))
    diffs = [(k, stored.get(k, "<absent>"), now.get(k, "<absent>")) for k in keys if stored.get(k) != now.get(k)]
    if not diffs:
        return
    listed = "; ".join(f"{k}: {json.dumps(a)} in the file, {json.dumps(b)} now" for k, a, b in diffs)
    flags = " ".join(_flag(k, stored.get(k)) for k, _, _ in diffs if _flag(k, stored.get(k)))
    raise SettingsMismatch(
        f"{path} holds runs made with other fixed settings ({listed}). Runs with different settings cannot "
        f"share one comparison: give another --out for the new settings, or re-run with the file's settings"
        + (f" ({flags})" if flags else "") + ".")


def _flag(key: str, value: Any) -> str:
    if key in ("val_fraction", "split_seed"):
        return ""
    name = "--" + key.replace("_", "-")
    if value is None:
        return f"without {name}"
    if isinstance(value, list):
        return f"{name} {' '.join(map(str, value))}"
    return f"{name} {value}"
