"""Terms averaged over a number of rows that differs between processes (boundary samples,
triplets with a valid negative), weighted so that DDP's average of the processes' gradients
is the gradient of the mean over all their rows, as one process computes it on the batch."""

from __future__ import annotations

import torch
import torch.distributed as dist


def global_mean_weights(counts: torch.Tensor) -> torch.Tensor:
    """Factors W·n/N for this process's row counts `counts` (one per term; N a term's count
    summed over the W processes).

    DDP averages the W processes' gradients, so a process's mean over its n rows, scaled by
    W·n/N, counts as n/N of the mean over all N rows. Unscaled, a process that found 2
    boundary samples weighed each 8 times as much as one that found 16, and one that found
    none diluted the term. Ones in a single process. A collective: every process calls it at
    the same steps, whatever it found.
    """
    counts = counts.float()
    if not (dist.is_available() and dist.is_initialized()):
        return torch.ones_like(counts)
    total = counts.clone()
    dist.all_reduce(total)
    return counts * dist.get_world_size() / total.clamp_min(1.0)
