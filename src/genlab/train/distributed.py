"""torchrun / DistributedDataParallel glue: one process per device, rank 0 writes files."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def pick_device(name: str) -> torch.device:
    _, local_rank, n = world()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank if n > 1 else torch.cuda.current_device())
        return torch.device("cpu")
    return torch.device(name)


def setup(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns whether distributed."""
    if world()[2] <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    return True


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def agree(value: float) -> float:
    """Rank 0's value on every rank (a clock reading, so all ranks stop at the same step)."""
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, 0)
    return float(t)


def agree_object(obj):
    """Rank 0's (picklable) object on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def mean(t: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor of the same shape on each rank."""
    t = t.detach().float().to(_comm_device(), copy=True)
    dist.all_reduce(t)
    return t / dist.get_world_size()


def _comm_device() -> torch.device:
    """Where collectives take their tensors: the current GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
