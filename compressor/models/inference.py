"""Make a frozen teacher cheaper to run without changing what it computes.

The teacher is only ever evaluated (clean logits, penultimate features for AMKD's
`embedding: features`, and input gradients for the boundary search), so each batch norm can be
folded into the convolution before it: one kernel instead of two, the same function up to
float rounding. The pairs are found by tracing with torch.fx, but the fold is applied to a copy
of the model itself, not to the traced graph, so the teacher keeps its class and its methods
(`forward_features`, `forward_head`, `num_features`). TorchScript files, exported programs and
models torch.fx cannot trace keep their batch norms and run as they are.
"""

from __future__ import annotations

import copy
from collections import Counter

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) with conv→BN pairs folded, or `model` if untraceable."""
    try:
        pairs = _conv_bn_pairs(fx.symbolic_trace(model))
    except (Exception, SystemExit):  # any tracing failure only means: run it unfolded
        return model  # (a forward's sys.exit included: its real run reports it)
    folded = copy.deepcopy(model).eval()
    for conv_name, norm_name in pairs:
        conv = folded.get_submodule(conv_name)
        norm = folded.get_submodule(norm_name)
        folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, norm))
        folded.set_submodule(norm_name, nn.Identity())
    return folded


def _conv_bn_pairs(graph_module: fx.GraphModule) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the norm only ever reads that conv's output.

    A module called more than once, or a conv output something else also reads, is left alone:
    folding it would change what the other use computes.
    """
    modules = dict(graph_module.named_modules())
    calls = [node for node in graph_module.graph.nodes if node.op == "call_module"]
    uses = Counter(node.target for node in calls)
    pairs = []
    for node in calls:
        norm = modules[node.target]
        source = node.args[0] if node.args else None
        if not (isinstance(norm, _NORMS) and isinstance(source, fx.Node)):
            continue
        if source.op != "call_module" or not isinstance(modules[source.target], _CONVS):
            continue
        if uses[node.target] != 1 or uses[source.target] != 1 or len(source.users) != 1:
            continue
        if norm.running_mean is None or norm.running_var is None:
            continue
        pairs.append((str(source.target), str(node.target)))
    return pairs
