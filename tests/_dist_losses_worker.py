"""One rank of the 2-process gloo test of the gathered contrastive losses (see tests/test_losses.py).

Usage: ``python _dist_losses_worker.py RANK WORLD_SIZE WORKDIR``. ``WORKDIR/data.pt`` holds the
shared inputs; the rank writes ``WORKDIR/result_RANK.pt``. Rendezvous goes through a file in
WORKDIR (no port to pick).

Cases (all float64, codes = outputs of a small shared Linear layer):
- ``cmim_ddp`` / ``infonce_ddp``: equal halves, the model wrapped in DistributedDataParallel
  (which averages parameter gradients over ranks); each rank's loss is the mean over its rows.
- ``cmim_sum`` / ``infonce_sum``: unequal per-rank sizes, per-rank *sum* of losses, parameter
  gradients and losses summed over ranks with all_reduce (exercises the padded gather).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from cmim_hf.distributed import destroy_process_group_safely
from cmim_hf.training.losses import cmim_contrastive_loss, gather_with_grad, infonce_loss


def _local_rows(n_total: int, sizes: list[int], rank: int) -> slice:
    assert sum(sizes) == n_total
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _make_model(data: dict) -> torch.nn.Linear:
    lin = torch.nn.Linear(data["w"].shape[1], data["w"].shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(data["w"])
        lin.bias.copy_(data["b"])
    return lin


def _codes(model, x: torch.Tensor, noise: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 'posterior samples' (B, K, L) of the same molecules from one forward pass."""
    b = x.shape[0]
    out = model(torch.cat([x, x + noise], dim=0))
    return out[:b].reshape(b, k, -1), out[b:].reshape(b, k, -1)


def _loss(kind: str, z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    if kind == "cmim":
        gathered, offset = gather_with_grad(z_a)
        return cmim_contrastive_loss(z_a, tau=tau, negatives=gathered, self_index_offset=offset)
    gathered_b, offset = gather_with_grad(z_b)
    return infonce_loss(z_a, z_b, tau=tau, negatives_b=gathered_b, self_index_offset=offset)


def main() -> None:
    rank, world_size, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{workdir / 'rendezvous'}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    data = torch.load(workdir / "data.pt")
    x, noise, tau, k = data["x"], data["noise"], data["tau"], data["k"]
    n = x.shape[0]
    results: dict[str, dict[str, torch.Tensor]] = {}
    try:
        for kind in ("cmim", "infonce"):
            # Equal halves, DDP averages the gradients, per-rank mean loss.
            model = DDP(_make_model(data))
            rows = _local_rows(n, [n // world_size] * world_size, rank)
            z_a, z_b = _codes(model, x[rows], noise[rows], k)
            loss = _loss(kind, z_a, z_b, tau).mean()
            loss.backward()
            loss_avg = loss.detach().clone()
            dist.all_reduce(loss_avg)
            loss_avg /= world_size
            results[f"{kind}_ddp"] = {
                "loss": loss_avg,
                "weight_grad": model.module.weight.grad.clone(),
                "bias_grad": model.module.bias.grad.clone(),
            }

            # Unequal sizes, summed losses and gradients.
            model = _make_model(data)
            rows = _local_rows(n, data["unequal_sizes"], rank)
            z_a, z_b = _codes(model, x[rows], noise[rows], k)
            loss = _loss(kind, z_a, z_b, tau).sum()
            loss.backward()
            loss_sum = loss.detach().clone()
            dist.all_reduce(loss_sum)
            grads = {}
            for name, p in (("weight_grad", model.weight), ("bias_grad", model.bias)):
                g = p.grad.clone()
                dist.all_reduce(g)
                grads[name] = g
            results[f"{kind}_sum"] = {"loss": loss_sum, **grads}
        torch.save(results, workdir / f"result_{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while its peer still talks to it
    finally:
        destroy_process_group_safely()  # cmim_hf.distributed: no deadlock with gloo workers


if __name__ == "__main__":
    main()
    # Leave without running C++ static destructors: under load, gloo's background threads can
    # still be joinable at interpreter exit and abort the process ("terminate called without
    # an active exception") after the results are written (seen once in CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
