"""Make a frozen teacher cheaper to run without changing what it computes.

The teacher is only ever evaluated (clean logits, penultimate features for AMKD's
`embedding: features`, and input gradients for the boundary search), so each batch norm can be
folded into the convolution before it: one kernel instead of two, the same function up to
float rounding. The pairs are found by tracing with torch.fx, but the fold is applied to a copy
of the model itself, not to the traced graph, so the teacher keeps its class and its methods
(`forward_features`, `forward_head`, `num_features`). TorchScript files, exported programs and
models torch.fx cannot trace keep their batch norms and run as they are. A user's model may
compute what a trace cannot see (a branch on the data, a weight read outside its module), so
when a probe batch is given the folded copy is kept only if it computes the same logits on it.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module, probe: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` (in eval mode) with conv→BN pairs folded; `model` if untraceable,
    or if the copy's logits on `probe` (a few images) are not the model's."""
    try:
        pairs = _conv_bn_pairs(fx.symbolic_trace(model))
    except (Exception, SystemExit):  # any tracing failure only means: run it unfolded
        return model  # (a forward's sys.exit included: its real run reports it)
    folded = copy.deepcopy(model).eval()
    # A model whose eval() leaves batch norm in training mode normalises by each batch's
    # statistics: there is nothing fixed to fold.
    pairs = [
        (conv, norm)
        for conv, norm in pairs
        if not (folded.get_submodule(conv).training or folded.get_submodule(norm).training)
    ]
    for conv_name, norm_name in pairs:
        conv = folded.get_submodule(conv_name)
        norm = folded.get_submodule(norm_name)
        assert isinstance(conv, _CONVS) and isinstance(norm, _NORMS)  # as the pairs were found
        folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, norm))
        folded.set_submodule(norm_name, nn.Identity())
    if probe is not None and not _same_logits(folded, model, probe):
        return model
    return folded


@torch.no_grad()
def _same_logits(folded: nn.Module, model: nn.Module, probe: torch.Tensor) -> bool:
    """Equal up to the rounding a fold brings (about 1e-6 of the logits' scale); anything
    more is a function the trace did not see. A forward that fails here fails on its own in
    the checks after, so it only means: run it unfolded."""
    reference = next(iter(model.parameters()), None)  # an entrypoint may build it on a GPU
    if reference is not None:
        probe = probe.to(reference.device, reference.dtype)
    try:
        expected, got = model(probe), folded(probe)
    except Exception:
        return False
    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)):
        return False
    if expected.shape != got.shape:
        return False
    expected, got = expected.float(), got.float()
    scale = max(1.0, expected.abs().max().item())
    return bool(torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * scale))


def _conv_bn_pairs(graph_module: fx.GraphModule) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the norm only ever reads that conv's output.

    A module called more than once, a conv output something else also reads, or a module
    whose weights the forward also reads itself (`F.conv2d(x, self.conv.weight)`) is left
    alone: folding it would change what the other use computes.
    """
    modules = dict(graph_module.named_modules())
    calls = [node for node in graph_module.graph.nodes if node.op == "call_module"]
    uses = Counter(node.target for node in calls)
    read = [str(node.target) for node in graph_module.graph.nodes if node.op == "get_attr"]

    def weights_read(name: object) -> bool:
        return any(target == name or target.startswith(f"{name}.") for target in read)

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
        if weights_read(node.target) or weights_read(source.target):
            continue
        pairs.append((str(source.target), str(node.target)))
    return pairs
