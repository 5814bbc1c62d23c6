"""A FrEIA ``GraphINN`` with deterministic parameter names and graph validation.

FrEIA 0.2's ``GraphINN`` registers its modules in a topological order computed by iterating
Python sets of nodes hashed by ``id``, so the ``module_list.<i>`` names of parallel branches
(and hence ``state_dict`` keys) change from one process to the next (vislearn/FrEIA#168): a
checkpoint can load weights into the wrong, same-shaped module. It also silently accepts an
output consumed twice (the graph is then not invertible) and fails with an obscure error on an
output consumed nowhere. :class:`FlowGraph` fixes the three: modules are registered under the
node names in the order of the node list given by the caller, and the wiring is validated.
"""

from __future__ import annotations

from collections.abc import Sequence

from FrEIA.framework import GraphINN, Node, OutputNode
from torch import Tensor, nn

__all__ = ["FlowGraph"]


def _default_name(node: Node) -> bool:
    return node.name == hex(id(node))[-6:]


class FlowGraph(GraphINN):
    """``GraphINN`` with stable ``state_dict`` keys ``nodes.<node name>.…`` and validated wiring.

    Unnamed nodes are named ``<ClassName><i>`` by their position in ``node_list``; names must be
    unique. Every node output must feed exactly one node (or an ``OutputNode``). The output is
    always a tuple (``force_tuple_output=True``), and log-dets are ``(B,)`` tensors.

    Args:
        node_list: every node of the graph; its order fixes the order of the inputs, conditions
            and outputs (as in ``GraphINN``) and of the registered modules.
    """

    def forward(self, x_or_z, c=None, rev=False, jac=True, intermediate_outputs=False, x=None):
        """``GraphINN.forward``, with the graph's own errors named ``FlowGraph`` and a layer's
        ``ValueError`` passed on as a ``ValueError`` (GraphINN wraps it in a ``RuntimeError``)."""
        given = 0 if c is None else len(c)
        if given != len(self.condition_nodes):
            raise ValueError(f"FlowGraph: expected {len(self.condition_nodes)} condition(s), got {given}")
        ends = self.out_nodes if rev else self.in_nodes
        n = 1 if isinstance(x_or_z, Tensor) else len(x_or_z)
        if n != len(ends):
            what = "reverse input" if rev else "input"
            raise ValueError(f"FlowGraph: expected {len(ends)} {what} tensor(s), got {n}")
        try:
            return super().forward(x_or_z, c=c, rev=rev, jac=jac, intermediate_outputs=intermediate_outputs, x=x)
        except RuntimeError as err:
            if isinstance(err.__cause__, ValueError):  # "<node> encountered an error." from a layer's check
                raise ValueError(f"FlowGraph: {err} {err.__cause__}") from err.__cause__
            raise

    def __init__(self, node_list: Sequence[Node], verbose: bool = False):
        node_list = list(node_list)
        names = self._validate(node_list)
        super().__init__(node_list, force_tuple_output=True, verbose=verbose)
        del self.module_list  # registered in a process-dependent order; replaced below
        self.nodes = nn.ModuleDict(
            {name: node.module for name, node in zip(names, node_list) if getattr(node, "module", None) is not None}
        )

    @staticmethod
    def _validate(node_list: list[Node]) -> list[str]:
        names = []
        for i, node in enumerate(node_list):
            module_type = getattr(node, "module_type", None)
            kind = getattr(module_type, "__name__", type(node).__name__)
            names.append(f"{kind}{i}" if _default_name(node) else str(node.name))
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"FlowGraph: node names must be unique, repeated: {duplicates}")
        for name, node in zip(names, node_list):
            for in_idx, (src, out_idx) in enumerate(node.inputs):
                if src.outputs[out_idx] != (node, in_idx):
                    raise ValueError(
                        f"FlowGraph: output {out_idx} of node {src.name!r} is consumed more than once "
                        f"(by {name!r} and another node); an invertible graph needs each output used exactly once"
                    )
            if not isinstance(node, OutputNode):
                for out_idx, dest in enumerate(node.outputs):
                    if dest is None:
                        raise ValueError(
                            f"FlowGraph: output {out_idx} of node {name!r} is not consumed; "
                            f"connect it to a node or an OutputNode"
                        )
        return names
