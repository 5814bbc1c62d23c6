"""FlowGraph: deterministic state_dict keys across processes and validated wiring."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from FrEIA.framework import ConditionNode, InputNode, Node, OutputNode

from flowsr import testing as ft
from flowsr.layers import FCN, ActNorm, AffineCoupling, Squeeze
from flowsr.layers.graph import FlowGraph

_BUILD = """
import functools
from FrEIA.framework import ConditionNode, InputNode, Node, OutputNode
from FrEIA.modules import Split, Concat
from flowsr.layers import FCN, ActNorm, AffineCoupling, InvConv1x1
from flowsr.layers.graph import FlowGraph

def build():
    inp = InputNode(4, 4, 4, name="x")
    cond = ConditionNode(2, 4, 4, name="c")
    split = Node(inp, Split, {"section_sizes": [2, 2]}, name="split")
    nodes, ends = [], []
    # Parallel branches: FrEIA 0.2's GraphINN registers them in a process-dependent order.
    for b in range(2):
        h = Node((split, b), ActNorm, {}, name=f"actnorm{b}")
        g = Node(h, InvConv1x1, {"seed": b}, name=f"invconv{b}")
        k = Node(g, AffineCoupling, {"subnet_constructor": functools.partial(FCN, hidden=4)},
                 conditions=cond, name=f"coupling{b}")
        nodes += [h, g, k]
        ends.append(k)
    cat = Node([(ends[0], 0), (ends[1], 0)], Concat, {}, name="concat")
    out = OutputNode(cat, name="z")
    return FlowGraph([inp, cond, split, *nodes, cat, out])
"""


def test_state_dict_keys_identical_across_processes() -> None:
    script = _BUILD + "\nprint(list(build().state_dict()))"
    runs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(4)
    }
    assert len(runs) == 1
    keys = runs.pop()
    assert "nodes.coupling0.subnet.conv1.weight" in keys and "module_list" not in keys


def test_flow_graph_is_exact_with_conditions(float64) -> None:
    namespace: dict = {}
    exec(_BUILD, namespace)
    graph = ft.perturb_parameters(namespace["build"](), seed=0, scale=0.1)
    ft.check_all(graph, [torch.randn(2, 4, 4, 4)], [torch.randn(2, 2, 4, 4)])


def test_fan_out_and_dangling_outputs_are_rejected() -> None:
    inp = InputNode(4, 4, 4, name="x")
    a = Node(inp, ActNorm, {}, name="a")
    b = Node(inp, ActNorm, {}, name="b")  # consumes x a second time
    with pytest.raises(ValueError, match="consumed more than once"):
        FlowGraph([inp, a, b, OutputNode(a, name="za"), OutputNode(b, name="zb")])
    inp = InputNode(4, 4, 4, name="x")
    sq = Node(inp, Squeeze, {}, name="squeeze")
    with pytest.raises(ValueError, match="not consumed"):
        FlowGraph([inp, sq])
    inp = InputNode(4, 4, 4, name="x")
    a = Node(inp, ActNorm, {}, name="same")
    b = Node(a, ActNorm, {}, name="same")
    with pytest.raises(ValueError, match="unique"):
        FlowGraph([inp, a, b, OutputNode(b, name="z")])


def test_unnamed_nodes_get_positional_names() -> None:
    inp = InputNode(4, 4, 4)
    cond = ConditionNode(2, 4, 4)
    h = Node(inp, AffineCoupling, {"subnet_constructor": FCN}, conditions=cond)
    graph = FlowGraph([inp, cond, h, OutputNode(h)])
    assert list(graph.nodes) == ["AffineCoupling2"]
