"""FNA's pipeline as a pure ask/tell strategy: seed -> architecture adaptation -> parameter adaptation.

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search*, ICLR 2020
(``ALGORITHMS.md``, FNA steps 1-5):

1. **seed**: a MobileNetV2 trained on the source task (a user's checkpoint, or trained here as the first
   job on the source dataset);
2. **architecture adaptation** (job ``adapt``): the seed's parameters remapped into the super-network, a
   differentiable sampled-path search on the target task (run by the trial,
   :mod:`nni_nas_ext.trial_code.fna_adaptation`; its gates' maths in :mod:`nni_nas_ext.trial_code.fna_gates`),
   the target architecture derived;
3. **parameter adaptation** (job ``param``): remap again *from the seed* into the derived architecture and
   fine-tune it on the target task; the test set is evaluated once, here.

With ``baselines`` two comparison jobs run in the same search under the same fine-tuning schedule: the
seed fine-tuned as it is (``seed_finetune``, proposed alongside ``adapt``: it only needs the seed) and the
derived architecture trained from scratch (``scratch``, alongside ``param``).

:class:`FnaPipeline` trains nothing: it proposes :class:`~nni_nas_ext.core.jobs.FnaJob` values (frozen, JSON;
the wire format's ``fna_job`` payload kind) and learns their results through :meth:`FnaPipeline.tell`. The
trial side is :mod:`nni_nas_ext.trial_code.fna_trial`. A job's result must name it
(``result["candidate"] == job.id``); ``result["default"]`` is a validation accuracy. A job has the attributes
the ``nni.nas`` adapter (:class:`nni_nas_ext.nni.nas_strategy.MorphismStrategy`) reads of a candidate (``id``,
``role``, ``step``, ``parent``, ``epochs``, ``to_dict``).

**[dev]** FNA adapts once, from one seed; nothing is searched over several rounds, so the pipeline has no
randomness of its own (``seed`` is carried for the trials). A failed seed or adaptation ends the pipeline
(status ``failed``, reason in :meth:`FnaPipeline.summary`); failed baselines are recorded and do not.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from nni_nas_ext.core.config import Config, ConfigError, option, parse_config
from nni_nas_ext.core.jobs import FnaJob

from .base import Budget

__all__ = ["FnaConfig", "FnaPipeline"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "fna-pipeline"
STATE_VERSION = 1


@dataclass(frozen=True)
class FnaConfig(Config):
    """The pipeline's own settings (NNI ``classArgs``; the trials' and the adaptation's are separate)."""

    config_name: ClassVar[str] = "fna"

    seed_checkpoint: Optional[str] = option(
        None, doc="absolute path of the seed's weights: a torchvision mobilenet_v2 state_dict or a checkpoint of "
                  "this project; null: train the seed on source_dataset first (nothing is downloaded)")
    epochs_seed: int = option(3, minimum=1, maximum=100_000,
                              doc="epochs of the seed's training on the source task when no seed_checkpoint is given")
    epochs_adapt: int = option(4, minimum=1, maximum=100_000,
                               doc="epochs of architecture adaptation (FNA detection: 14, of which 8 weight-only)")
    epochs_param: int = option(3, minimum=0, maximum=100_000,
                               doc="epochs of parameter adaptation (fine-tuning of the derived architecture)")
    baselines: bool = option(False, doc="also fine-tune the seed as is and train the derived architecture from "
                                        "scratch, with the same schedule (the paper's comparisons)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="seed of the trials (initialisation, splits, sampling)")

    def __post_init__(self) -> None:
        super().__post_init__()
        # judged from the string alone: the strategy never looks at files (the NNI adapter checks the file)
        if self.seed_checkpoint is not None and not os.path.isabs(self.seed_checkpoint):
            raise ConfigError(f"fna: seed_checkpoint must be an absolute path (trials run in other folders), but "
                              f"got {self.seed_checkpoint!r}; give its full path, e.g. what "
                              f"`realpath {self.seed_checkpoint}` prints", key="seed_checkpoint",
                              value=self.seed_checkpoint)


_RUNNING, _DONE, _FAILED = "running", "done", "failed"


class FnaPipeline:
    """The FNA pipeline (seed, architecture adaptation, parameter adaptation, optional baselines), ask/tell.

    Parameters
    ----------
    config
        An :class:`FnaConfig`, a mapping of its keys, or ``None`` for the defaults.

    The jobs, in order: ``seed`` (unless ``seed_checkpoint``); once the seed is known, ``adapt`` (and
    ``seed_finetune`` with ``baselines``); once ``adapt`` reported a derived architecture, ``param`` (and
    ``scratch``). :attr:`finished` turns true when every proposed job was told. Implements
    :class:`~nni_nas_ext.strategies.base.SearchStrategy`.
    """

    log_name: ClassVar[str] = "FNA"
    #: FNA's pipeline has a fixed order of jobs: the budget is not used
    budget_aware: ClassVar[bool] = False

    def __init__(self, config: Union[FnaConfig, Mapping[str, Any], None] = None) -> None:
        if config is None or isinstance(config, Mapping):
            config = parse_config(FnaConfig, config)
        elif not isinstance(config, FnaConfig):
            raise TypeError(f"config must be an FnaConfig or a mapping, but got {type(config).__name__}")
        self.config: FnaConfig = config
        self._jobs: dict[str, FnaJob] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, str] = {}
        self._unasked: list[str] = []
        self._serial = 0
        self._status = _RUNNING
        self._reason: str | None = None
        if config.seed_checkpoint is None:
            self._propose("seed", config.epochs_seed)
        else:
            self._propose_adaptation(parent=None)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[FnaJob]:
        """Jobs not returned before, in proposal order; ``[]`` while waiting for results (``budget`` unused)."""
        out = [self._jobs[j] for j in self._unasked]
        self._unasked = []
        return out

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        """Record a job's final result or failure (never raises; ``False`` when the report is ignored).

        A result with a ``"failed"`` key, without a finite ``"default"``, or (for ``adapt``) without a
        valid derived ``"architecture"`` and ``"choice"`` counts as a failure.
        """
        if not isinstance(candidate_id, str) or candidate_id not in self._jobs:
            logger.warning("FNA: ignoring a result for unknown job %r", candidate_id)
            return False
        if self._told(candidate_id):
            logger.warning("FNA: ignoring a second result for job %s", candidate_id)
            return False
        if isinstance(result, Mapping) and result.get("candidate") not in (None, candidate_id):
            logger.warning("FNA: ignoring a result for %s that names job %r", candidate_id, result.get("candidate"))
            return False
        job = self._jobs[candidate_id]
        reason = _failure_of(job, result, failure)
        if reason is None:
            self._results[candidate_id] = json.loads(json.dumps(dict(result)))  # type: ignore[arg-type]
        else:
            logger.warning("FNA: job %s failed: %s", candidate_id, reason)
            self._failures[candidate_id] = reason
        if candidate_id in self._unasked:
            self._unasked.remove(candidate_id)
        self._advance(job)
        return True

    @property
    def finished(self) -> bool:
        return self._status != _RUNNING or (all(self._told(j) for j in self._jobs) and not self._unasked
                                            and self._product_done())

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.config.to_dict(),
                "jobs": [j.to_dict() for j in self._jobs.values()], "results": copy.deepcopy(self._results),
                "failures": dict(self._failures), "unasked": list(self._unasked), "serial": self._serial,
                "status": self._status, "reason": self._reason}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same configuration); raises ``ValueError`` naming what is wrong."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an FNA pipeline state: expected 'format': {STATE_FORMAT!r}, but got {found!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"FNA state version {state.get('version')!r} is not the supported {STATE_VERSION}")
        config = parse_config(FnaConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the state was saved with another configuration (keys {diff} differ); use "
                             "FnaPipeline.from_state_dict(state)")
        try:
            jobs = {j.id: j for j in (FnaJob.from_dict(d) for d in state["jobs"])}
            results = {str(k): dict(v) for k, v in state["results"].items()}
            failures = {str(k): str(v) for k, v in state["failures"].items()}
            unasked = [str(j) for j in state["unasked"]]
            unknown = sorted((set(results) | set(failures) | set(unasked)) - set(jobs))
            if unknown:
                raise ValueError(f"jobs {unknown[:3]} are referred to but not listed")
            if state["status"] not in (_RUNNING, _DONE, _FAILED):
                raise ValueError(f"unknown status {state['status']!r}")
            new = {"_jobs": jobs, "_results": results, "_failures": failures, "_unasked": unasked,
                   "_serial": int(state["serial"]), "_status": state["status"], "_reason": state["reason"]}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed FNA state: {type(exc).__name__}: {exc}") from None
        self.__dict__.update(new)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> FnaPipeline:
        """A pipeline with the state's configuration, continued from ``state``."""
        if not isinstance(state, Mapping):
            raise ValueError(f"an FNA state is a JSON object, but got {type(state).__name__}")
        pipeline = cls(parse_config(FnaConfig, state.get("config")))
        pipeline.load_state_dict(state)
        return pipeline

    def summary(self) -> dict[str, Any]:
        """Status, and per job kind its figures: val/test accuracy, parameters, MAdds, CPU time (plain JSON)."""
        by_kind: dict[str, dict[str, Any]] = {}
        for job in self._jobs.values():
            result = self._results.get(job.id, {})
            entry = {"job": job.id, "status": "failed" if job.id in self._failures else
                     ("done" if job.id in self._results else "pending"), "failure": self._failures.get(job.id)}
            for key in ("default", "test_acc", "start_val_acc", "params", "madds", "cpu_seconds", "arch_id",
                        "choice", "seed_madds", "seed_params", "source_test_acc"):
                if key in result:
                    entry["val_acc" if key == "default" else key] = result[key]
            by_kind[job.kind] = entry
        cpu = sum(float(r.get("cpu_seconds", 0.0)) for r in self._results.values())
        pipeline_cpu = sum(float(self._results[j.id].get("cpu_seconds", 0.0)) for j in self._jobs.values()
                           if j.id in self._results and j.kind in ("seed", "adapt", "param"))
        status = "failed" if self._status == _FAILED else ("finished" if self.finished else "running")
        return {"strategy": "fna", "status": status, "reason": self._reason, "jobs": by_kind,
                "cpu_seconds_all": cpu, "cpu_seconds_pipeline": pipeline_cpu,
                "failures": [{"job": j, "reason": r} for j, r in self._failures.items()],
                "config": self.config.to_dict()}

    # ---- extras ---------------------------------------------------------------------------------

    @property
    def jobs(self) -> list[FnaJob]:
        """Every job proposed so far, in proposal order."""
        return list(self._jobs.values())

    @property
    def candidates(self) -> list[FnaJob]:
        """Alias of :attr:`jobs` (the name the NNI adapter and reports use)."""
        return self.jobs

    def job(self, job_id: str) -> FnaJob | None:
        """The job proposed under ``job_id`` (``None``: never proposed)."""
        return self._jobs.get(job_id)

    def result(self, job_id: str) -> dict[str, Any] | None:
        """A copy of the successful final result of ``job_id`` (``None``: not told, failed or unknown)."""
        found = self._results.get(job_id)
        return None if found is None else copy.deepcopy(found)

    @property
    def pending(self) -> list[str]:
        """Ids of jobs handed out by :meth:`ask` and not told yet."""
        return [j for j in self._jobs if not self._told(j) and j not in self._unasked]

    def reissue_pending(self, ids: Sequence[str] | None = None) -> list[str]:
        """Hand pending jobs out again at the next :meth:`ask` (their trials were lost)."""
        pending = self.pending
        chosen = pending if ids is None else [j for j in pending if j in set(ids)]
        self._unasked.extend(chosen)
        return chosen

    # ---- the pipeline -----------------------------------------------------------------------------

    def _told(self, job_id: str) -> bool:
        return job_id in self._results or job_id in self._failures

    def _propose(self, kind: str, epochs: int, **extra: Any) -> FnaJob:
        job = FnaJob(id=f"{kind}-{self._serial:04d}", kind=kind, epochs=epochs, **extra)
        self._serial += 1
        self._jobs[job.id] = job
        self._unasked.append(job.id)
        logger.info("FNA: proposing %s (%d epochs)", job.id, epochs)
        return job

    def _seed_source(self, parent: str | None) -> dict[str, Any]:
        return {"parent": parent, "seed_checkpoint": self.config.seed_checkpoint}

    def _propose_adaptation(self, parent: str | None) -> None:
        self._propose("adapt", self.config.epochs_adapt, **self._seed_source(parent))
        if self.config.baselines:
            self._propose("seed_finetune", self.config.epochs_param, **self._seed_source(parent))

    def _product_done(self) -> bool:
        return any(j.kind == "param" for j in self._jobs.values())

    def _advance(self, job: FnaJob) -> None:
        if self._status != _RUNNING:
            return
        if job.kind == "seed":
            if job.id in self._failures:
                self._fail(f"the seed job {job.id} failed ({self._failures[job.id]}); there is nothing to adapt")
                return
            self._propose_adaptation(parent=job.id)
        elif job.kind == "adapt":
            if job.id in self._failures:
                self._fail(f"the architecture adaptation {job.id} failed ({self._failures[job.id]})")
                return
            result = self._results[job.id]
            common = {**self._seed_source(job.parent), "architecture": result["architecture"],
                      "choice": {str(k): int(v) for k, v in result["choice"].items()}, "adapt": job.id}
            self._propose("param", self.config.epochs_param, **common)
            if self.config.baselines:
                self._propose("scratch", self.config.epochs_param, **common)
        if self._status == _RUNNING and self._product_done() and all(self._told(j) for j in self._jobs):
            self._status = _DONE

    def _fail(self, reason: str) -> None:
        self._reason = reason
        self._status = _FAILED
        logger.error("FNA: %s", reason)


def _failure_of(job: FnaJob, result: Mapping[str, Any] | None, failure: str | None) -> str | None:
    import math

    if failure is not None:
        return str(failure)
    if not isinstance(result, Mapping):
        return f"no result (got {type(result).__name__})"
    if result.get("failed"):
        return str(result["failed"])
    value = result.get("default")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"the result has no finite 'default' (validation accuracy): {value!r}"
    if job.kind == "adapt":
        arch, choice = result.get("architecture"), result.get("choice")
        if not isinstance(arch, Mapping) or not isinstance(choice, Mapping):
            return "the adaptation's result lacks the derived 'architecture' and 'choice'"
        try:
            from nni_nas_ext.core.mbconv import MBConvArchitecture

            MBConvArchitecture.from_dict(arch)
        except (ValueError, TypeError, KeyError) as exc:
            return f"the adaptation's derived architecture is not valid: {exc}"
    return None
