"""Training one network across processes (and GPUs) with DistributedDataParallel, as ``torchrun`` starts them.

Legend: B batch.

Each process holds the whole training set and draws the same epoch order from the same seed; step ``s`` of
process ``r`` trains on its own ``batch_size`` images of that order, so the *effective* batch is
``batch_size x processes`` and an epoch takes ``1 / processes`` of the steps. The learning rate is not changed:
scale it yourself (``--lr``) if the larger batch needs it (the linear rule multiplies it by the process count).
Only the first process (rank 0) writes checkpoints, curves, the model and the run's records; all of them read a
checkpoint to resume.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ParameterError

__all__ = ["launched", "init_from_env", "rank_and_world", "is_main", "barrier", "wrap", "shard", "all_sum",
           "same_everywhere"]


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its environment names a world of processes)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: str) -> torch.device:
    """Join the process group ``torchrun`` describes (``gloo`` on the CPU, ``nccl`` on CUDA) and return this
    process's device (``cuda:LOCAL_RANK`` for a CUDA run); ``device`` is a resolved device name (``cpu``, ``cuda``).

    Raises:
        ParameterError: the process was not started by ``torchrun``.
    """
    if not launched():
        raise ParameterError("distributed training runs under torchrun: torchrun --nproc-per-node N -m mstool.cli "
                             "train --ddp ...")
    cuda = str(device).startswith("cuda")
    if cuda:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dev


def rank_and_world() -> tuple[int, int]:
    """``(rank, processes)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every process of the group (nothing to wait for outside one)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training steps call: ``model`` itself in one process, its DistributedDataParallel wrapper
    (which averages the gradients across processes) in several."""
    if rank_and_world()[1] == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(order: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """This process's batches of an epoch's ``order`` (the same on every process): step ``s`` of rank ``r`` takes
    the ``r``-th slice of ``batch`` of the ``s``-th block of ``batch x processes``; the last block wraps around to
    the start, so every process takes the same number of steps (DistributedDataParallel needs it).

    Example:
        >>> [b.tolist() for b in shard(torch.arange(5), 2)]  # one process: plain batches
        [[0, 1], [2, 3], [4]]
    """
    rank, world = rank_and_world()
    if world == 1:
        return list(order.split(batch))
    block = batch * world
    steps = -(-order.numel() // block)
    padded = order.repeat(-(-steps * block // order.numel()))[:steps * block]
    return list(padded.view(steps, world, batch)[:, rank])


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over every process (itself in one process)."""
    if rank_and_world()[1] > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def same_everywhere(value: int) -> bool:
    """Whether every process holds the same integer ``value`` (always true in one process); every process gets the
    same answer, so all of them can stop together instead of one waiting forever in a collective.

    Example:
        >>> same_everywhere(3)
        True
    """
    if rank_and_world()[1] == 1:
        return True
    # nccl reduces only CUDA tensors; init_from_env has set this process's GPU
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    both = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)  # the largest value and minus the smallest, in one collective
    return int(both[0]) == -int(both[1])
