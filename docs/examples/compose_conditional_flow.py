"""Compose a small conditional flow from flowsr layers in a FrEIA graph, then check it.

Run: ``python docs/examples/compose_conditional_flow.py``
"""

import functools

import torch
from FrEIA.framework import ConditionNode, GraphINN, InputNode, Node, OutputNode

from flowsr.layers import FCN, ActNorm, AffineCoupling, ConditionalGaussianSplit, InvConv1x1, Squeeze, ZeroConv2d
from flowsr.testing import check_all, default_dtype, perturb_parameters

C, H, W = 3, 16, 16  # an HR patch
F = 16  # channels of the condition, e.g. features of the LR image from an encoder


def build_flow() -> GraphINN:
    """HR patch -> squeeze -> 2 x (ActNorm, 1x1 conv, conditional coupling) -> learned-prior split."""
    x_in = InputNode(C, H, W, name="hr")
    cond = ConditionNode(F, H // 2, W // 2, name="lr_features")
    nodes = [x_in, cond, Node(x_in, Squeeze, {}, name="squeeze")]
    for k in range(2):
        nodes.append(Node(nodes[-1], ActNorm, {}, name=f"actnorm{k}"))
        nodes.append(Node(nodes[-1], InvConv1x1, {"seed": k}, name=f"invconv{k}"))
        coupling = {"subnet_constructor": functools.partial(FCN, hidden=32), "scale": "atan"}
        nodes.append(Node(nodes[-1], AffineCoupling, coupling, conditions=cond, name=f"coupling{k}"))
    prior = {"n_keep": 6, "subnet_constructor": ZeroConv2d}
    split = Node(nodes[-1], ConditionalGaussianSplit, prior, name="learned_prior_split")
    nodes += [split, OutputNode(split.out0, name="kept"), OutputNode(split.out1, name="eps")]
    return GraphINN(nodes, force_tuple_output=True)


torch.manual_seed(0)
flow = build_flow()
hr = torch.rand(4, C, H, W)
features = torch.randn(4, F, H // 2, W // 2)
(kept, eps), logdet = flow([hr], c=[features])
print(f"kept {tuple(kept.shape)}, eps {tuple(eps.shape)}, log-det {[round(v, 3) for v in logdet.tolist()]}")
(hr_back,), _ = flow([kept, eps], c=[features], rev=True)
print(f"reconstruction error (float32) {(hr_back - hr).abs().max().item():.2e}")

# The checks flowsr's own tests run: build in float64, give the zero-initialised layers random
# non-trivial weights, then test invertibility, log-det against autograd, batch independence, ...
with default_dtype(torch.float64):
    flow64 = perturb_parameters(build_flow(), seed=0, scale=0.1).eval()
    ran = check_all(flow64, [torch.rand(2, C, H, W)], [torch.randn(2, F, H // 2, W // 2)])
print("flowsr.testing checks passed:", ", ".join(ran))
