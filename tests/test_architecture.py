"""Architecture values: round-trips, validation rules and their messages, builder naming."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from _archgen import random_architecture, random_batch, random_state

from nni_nas_ext.core import Architecture, ArchitectureError, GraphBuilder, build_module, state_key
from nni_nas_ext.core.builder import functional_forward
from nni_nas_ext.search_spaces import create_seed, nash_seed, plain_cnn


def small() -> dict:
    g = GraphBuilder((1, 8, 8), 10)
    x = g.conv_bn_relu(g.input, 8)
    y = g.conv_bn_relu(x, 8)
    x = g.maxpool(g.add(x, y), 2)
    x = g.concat(x, g.relu(g.conv(x, 4, 1)))
    return g.build(g.linear(g.gap(x), 10)).to_dict()


def expect_error(data: dict, node: str | None, *fragments: str) -> ArchitectureError:
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_dict(data)
    err = info.value
    assert err.node == node, str(err)
    for fragment in fragments:
        assert fragment in str(err), f"{fragment!r} not in {str(err)!r}"
    return err


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_is_exact(seed: int) -> None:
    arch = random_architecture(np.random.default_rng(seed))
    data = arch.to_dict()
    again = Architecture.from_dict(json.loads(json.dumps(data)))
    assert again == arch and again.to_dict() == data and again.id == arch.id
    assert Architecture.from_json(arch.to_json()) == arch


def test_defaults_are_filled_so_equal_nodes_have_equal_dicts() -> None:
    data = small()
    for node in data["nodes"]:
        if node["op"] == "conv":
            del node["stride"], node["padding"], node["groups"]
    arch = Architecture.from_dict(data)
    assert arch == Architecture.from_dict(small())
    assert arch.node("conv1")["padding"] == 1 and arch.node("maxpool1")["stride"] == 2


def test_id_ignores_lineage_but_not_structure() -> None:
    arch = Architecture.from_dict(small())
    data = small()
    data["lineage"] = {"parent": "p", "steps": [{"op": "widen", "site": {"node": "conv1"}, "params": {}}]}
    assert Architecture.from_dict(data).id == arch.id
    data["nodes"][0]["out_channels"] = 16
    data["nodes"][3]["out_channels"] = 16
    assert Architecture.from_dict(data).id != arch.id


def test_shapes_and_queries() -> None:
    arch = Architecture.from_dict(small())
    assert arch.shape("input") == (1, 8, 8)
    assert arch.shape("maxpool1") == (8, 4, 4)
    assert arch.shape("concat1") == (12, 4, 4)
    assert arch.shape("gap1") == (12,)
    assert arch.consumers("relu1") == ("conv2", "add1")
    assert arch.is_nonnegative("relu1") and arch.is_nonnegative("maxpool1") and not arch.is_nonnegative("conv1")
    assert "input" in arch.ancestors("linear1") and "linear1" not in arch.ancestors("linear1")
    assert arch.num_parameters() == sum(p.numel() for p in build_module(arch).parameters())


def test_value_is_immutable_and_nodes_are_copied() -> None:
    data = small()
    arch = Architecture.from_dict(data)
    data["nodes"][0]["out_channels"] = 999
    assert arch.node("conv1")["out_channels"] == 8
    with pytest.raises(AttributeError):
        arch.output = "x"  # type: ignore[misc]


# ---- every validation rule raises ArchitectureError naming node, rule and value --------------------


def test_unknown_op() -> None:
    data = small()
    data["nodes"][1]["op"] = "batchnorm"
    expect_error(data, "bn1", "'op' must be one of", "'batchnorm'")


def test_cycle() -> None:
    data = small()
    data["nodes"][0]["inputs"] = ["relu2"]  # conv1 <- relu2 <- ... <- conv1
    err = expect_error(data, "conv1", "acyclic", "cycle")
    assert "relu2" in str(err)


def test_dangling_input() -> None:
    data = small()
    data["nodes"][2]["inputs"] = ["bn9"]
    expect_error(data, "relu1", "dangling input 'bn9'")


def test_merge_shape_mismatch() -> None:
    data = small()
    data["nodes"][3]["out_channels"] = 16  # conv2: relu2 has 16 channels, relu1 8
    expect_error(data, "add1", "same shape", "(8, 8, 8)", "(16, 8, 8)")
    data = small()
    data["nodes"][-4]["inputs"] = ["relu1"]  # conv3 reads 8x8 while maxpool1 is 4x4
    expect_error(data, "concat1", "every dimension but channels")


@pytest.mark.parametrize("key,value", [("out_channels", 0), ("out_channels", -3), ("kernel", 0)])
def test_non_positive_widths_and_kernels(key: str, value: int) -> None:
    data = small()
    data["nodes"][0][key] = value
    expect_error(data, "conv1", f"'{key}' must be >= 1", repr(value))


def test_kernel_must_fit() -> None:
    data = small()
    data["nodes"][0].update(kernel=11, padding=1)
    expect_error(data, "conv1", "kernel must fit", "kernel 11 on 8x8 with padding 1")
    data = small()
    data["nodes"][0].update(kernel=3, padding=2)
    expect_error(data, "conv1", "padding must be <= kernel // 2", "padding 2")


def test_groups_must_divide() -> None:
    data = small()
    data["nodes"][3]["groups"] = 3
    expect_error(data, "conv2", "groups must divide", "groups 3, in_channels 8, out_channels 8")


def test_types_are_checked() -> None:
    data = small()
    data["nodes"][0]["bias"] = 1
    expect_error(data, "conv1", "'bias' must be true or false")
    data = small()
    data["nodes"][0]["kernel"] = True
    expect_error(data, "conv1", "'kernel' must be an integer", "True")
    data = small()
    data["nodes"][0]["dilation"] = 2
    expect_error(data, "conv1", "unknown ['dilation']")


def test_output_rules() -> None:
    data = small()
    data["output"] = "gap1"
    expect_error(data, "gap1", "output node must produce shape (10,)", "(12,)")
    data = small()
    data["output"] = "nope"
    expect_error(data, None, "'output' must be the id of a node", "'nope'")
    data = small()
    data["nodes"].append({"id": "extra", "op": "relu", "inputs": ["relu1"]})
    expect_error(data, "extra", "lead to the output")


def test_ids() -> None:
    data = small()
    data["nodes"][1]["id"] = "conv1"
    expect_error(data, "conv1", "unique")
    data = small()
    data["nodes"][1]["id"] = "input"
    expect_error(data, "input", "reserved")
    data = small()
    data["nodes"][1]["id"] = "bn.1"
    expect_error(data, None, "nodes[1] needs an 'id'", "'bn.1'")


def test_top_level() -> None:
    expect_error({**small(), "extra": 1}, None, "unknown keys ['extra']")
    data = small()
    del data["num_classes"]
    expect_error(data, None, "['num_classes'] missing")
    expect_error({**small(), "input_shape": [1, 8]}, None, "input_shape must be 3 positive integers")
    expect_error({**small(), "version": 2}, None, "'version' must be 1")
    with pytest.raises(ArchitectureError, match="valid JSON"):
        Architecture.from_json("{")


def test_error_does_not_touch_input() -> None:
    data = small()
    data["nodes"][0]["inputs"] = ["relu2"]
    snapshot = copy.deepcopy(data)
    with pytest.raises(ArchitectureError):
        Architecture.from_dict(data)
    assert data == snapshot


# ---- builder --------------------------------------------------------------------------------------


def test_parameter_names_follow_node_ids() -> None:
    arch = Architecture.from_dict(small())
    keys = set(build_module(arch).state_dict())
    assert state_key("conv1", "weight") in keys and state_key("bn1", "running_var") in keys
    assert {k.split(".")[1] for k in keys} <= {n.id for n in arch.nodes}


def test_module_runs_and_captures_nodes() -> None:
    arch = Architecture.from_dict(small())
    module = build_module(arch).eval()
    x = torch.randn(4, 1, 8, 8)
    acts = module.forward_nodes(x, ["relu1", "linear1"])
    assert acts["relu1"].shape == (4, 8, 8, 8) and torch.equal(acts["linear1"], module(x))


@pytest.mark.parametrize("seed", range(25))
def test_functional_forward_matches_the_module(seed: int) -> None:
    """The calibration pass of deepen computes without modules; it must compute what the module does."""
    arch = random_architecture(np.random.default_rng(seed))
    state, x = random_state(arch, seed), random_batch(arch, seed)
    before = {k: v.clone() for k, v in state.items()}
    inner = [n.id for n in arch.nodes][len(arch.nodes) // 2]
    module = build_module(arch, state)
    for mode in ("eval", "train"):
        module.train(mode == "train")
        for m in module.modules():  # dropout off in both modes, as functional_forward has it
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        with torch.no_grad():
            want = module.forward_nodes(x, [inner, arch.output])
        got = functional_forward(arch, state, x, [inner, arch.output], batchnorm=mode)
        for nid in (inner, arch.output):  # float32 rounding (channels-last convolutions), relative to scale
            scale = want[nid].abs().max().item()
            assert (got[nid] - want[nid]).abs().max().item() <= 1e-5 * max(scale, 1e-3), (mode, nid)
    # the running statistics are not touched (the module's copies changed in train mode, not these)
    assert all(torch.equal(state[k], v) for k, v in before.items())


def test_seeds() -> None:
    assert plain_cnn(20).num_parameters() > 0
    assert sum(n.op in ("conv", "linear") for n in plain_cnn(60).nodes) == 60
    assert nash_seed((1, 8, 8), widths=(8, 16, 16)).shape("gap1") == (16,)
    with pytest.raises(ValueError, match="unknown seed 'nahs'.*did you mean 'nash'"):
        create_seed("nahs")
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        plain_cnn(1)


def test_macs_count_convolutions_and_linear_layers() -> None:
    g = GraphBuilder((3, 8, 8), 10)
    x = g.conv(g.input, 4, 3)              # 4*8*8 outputs x 3*9 MACs
    x = g.conv(x, 4, 3, groups=4)          # depthwise: 4*8*8 x 1*9
    arch = g.build(g.linear(g.gap(x), 10))  # 10 x 4
    assert arch.num_macs() == 4 * 64 * 27 + 4 * 64 * 9 + 40
