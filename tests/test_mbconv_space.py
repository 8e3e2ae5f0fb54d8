"""FNA's MobileNetV2 space as an ``nni.nas`` ModelSpace (nni_nas_ext/nni/mbconv_space.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_nas_ext.core.mbconv import MBConvArchitecture, build_network
from nni_nas_ext.nni.mbconv_space import (
    MBConvModelSpace, choice_to_sample, frozen_state_to_network, sample_to_choice,
)
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet


def _space(**kw) -> MBConvModelSpace:
    return MBConvModelSpace(**{"num_classes": 10, "width_mult": 0.25, "input_size": 8, "in_channels": 1,
                               "max_layers": 2, **kw})


def test_one_layer_choice_per_slot_labelled_like_the_core() -> None:
    from nni.nas.nn.pytorch import LayerChoice

    ms = _space()
    mutables = ms.simplify()
    labels = [ms.space.label(s, l) for s, l in ms.space.layer_slots()]
    assert list(mutables) == labels
    for (s, l), label in zip(ms.space.layer_slots(), labels):
        assert mutables[label].values == list(range(len(ms.space.ops(s, l))))  # indices into SuperNetSpace.ops
    assert all(isinstance(m, LayerChoice) for m in ms.supernet.searchable)
    assert ms.choice is None


@pytest.mark.parametrize("input_size,width_mult", [(8, 0.25), (28, 0.35), (64, 0.5)])
def test_width_and_resolution_are_constructor_parameters(input_size: int, width_mult: float) -> None:
    ms = _space(input_size=input_size, width_mult=width_mult, max_layers=1)
    assert ms.space.seed.input_size == input_size and ms.space.seed.width_mult == width_mult
    sample: dict = {}
    model = ms.random(memo=sample, random_state=np.random.RandomState(0))
    out = model(torch.randn(2, 1, input_size, input_size))
    assert out.shape == (2, 10)


def test_a_frozen_model_computes_what_the_derived_network_computes_with_the_same_weights() -> None:
    ms = _space()
    torch.manual_seed(0)
    supernet = MBConvSuperNet(ms.space)  # one set of weights for every candidate
    x = torch.randn(5, 1, 8, 8)
    rng = np.random.RandomState(1)
    for _ in range(3):
        sample: dict = {}
        model = ms.random(memo=sample, random_state=rng)
        choice = sample_to_choice(ms.space, sample)
        assert model.choice == choice
        model.load_supernet_state(supernet.state_dict())
        derived = build_network(ms.space.derive(choice))
        derived.load_state_dict(supernet.extract(choice))
        model.eval()
        derived.eval()
        assert torch.allclose(model(x), derived(x), atol=1e-6)
        # and the other way round: the frozen model's own state_dict loads into the derived network
        again = build_network(model.architecture)
        again.load_state_dict(frozen_state_to_network(ms.space, choice, model.state_dict()))
        again.eval()
        assert torch.equal(again(x), model(x))


def test_nni_random_strategy_samples_valid_architectures(tmp_path) -> None:
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    def evaluate(model: MBConvModelSpace) -> None:
        arch = model.architecture
        logits = model(torch.randn(2, 1, 8, 8))
        records.append({"madds": arch.num_madds(), "arch": arch.to_dict(),
                        "choice": {ms.space.label(*k): v for k, v in model.choice.items()}})
        nni.report_final_result(float(logits.shape[1]))

    records: list[dict] = []  # the sequential engine runs the evaluator in this process

    ms = _space()
    strategy = Random(dedup=True, seed=0)
    config = NasExperimentConfig("sequential", "raw", "local")
    config.max_trial_number = 4
    config.experiment_working_directory = str(tmp_path)
    experiment = NasExperiment(ms, FunctionalEvaluator(evaluate), strategy, config)
    try:
        experiment.run(wait_completion=True)
        models = list(strategy.list_models(sort=False))
    finally:
        experiment.stop()
    assert len(models) == len(records) == 4
    seen = set()
    for model, metric in zip(models, records):
        assert model.metric == 10.0
        arch = MBConvArchitecture.from_dict(metric["arch"])
        assert arch == ms.space.derive(metric["choice"])  # the sample maps to the core's derivation
        assert metric["madds"] == arch.num_madds()
        assert sample_to_choice(ms.space, model.sample) == ms.space.normalise_choice(metric["choice"])
        seen.add(arch.id)
    assert len(seen) == 4  # dedup: four different architectures


def test_samples_and_choices_translate_both_ways_and_bad_ones_are_named() -> None:
    ms = _space()
    choice = {slot: len(ms.space.ops(*slot)) - 1 for slot in ms.space.layer_slots()}
    sample = choice_to_sample(ms.space, choice)
    assert set(sample) == {ms.space.label(*s) for s in ms.space.layer_slots()}
    assert sample_to_choice(ms.space, {**sample, "other": 3}) == choice
    with pytest.raises(ValueError, match="misses slots"):
        sample_to_choice(ms.space, {k: v for k, v in sample.items() if k != "s2_l1"})
    with pytest.raises(ValueError, match=r"choice\[s1_l0\] must be an op index in \[0, 6\)"):
        sample_to_choice(ms.space, {**sample, "s1_l0": 6})
    with pytest.raises(ValueError, match="needs a frozen model"):
        ms.load_supernet_state({})
