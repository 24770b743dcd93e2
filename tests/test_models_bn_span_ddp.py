"""X3D-M's 4-clip BatchNorm under DistributedDataParallel on 1, 2, 4 and 8 gloo processes
(and on 4 processes of one clip each: one group of 4, as 16 processes would form) against
the reference's DataParallel over 4 GPUs, rebuilt independently (tests/helpers/models.py):
the global batch of 16 cut into four chunks of 4, chunk k through replica k (plain
``nn.BatchNorm3d`` copies of the model), loss over the concatenated outputs, gradients summed
over the replicas, only replica 0's running statistics kept.

Float64 and no dropout, so that the two computations agree to rounding; a tiny clip
(4 x 32 x 32) so that 8 processes fit on 2 cores in seconds."""

import copy
import functools
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from models.bn_span import apply_bn_span
from tests.helpers.models import SPAN, batch, build_model, data_parallel_step, optimizer
from tests.helpers.train import one_thread

RTOL, ATOL = 1e-7, 1e-10


def ddp_worker(rank: int, world: int, global_batch: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        per_process = global_batch // world
        model = apply_bn_span(build_model().train(), SPAN, per_process, rank, world)
        ddp = DistributedDataParallel(model)
        x, y = batch(global_batch)
        mine = slice(rank * per_process, (rank + 1) * per_process)
        loss = F.cross_entropy(ddp(x[mine]), y[mine])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        optimizer(model).step()
        before_sync = copy.deepcopy(model.state_dict())
        for buffer in model.buffers():  # what the trainer does before evaluating
            dist.broadcast(buffer, src=0)
        torch.save({"loss": loss.item(), "grads": grads, "before_sync": before_sync,
                    "state": model.state_dict()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@functools.cache
def reference_step(global_batch: int) -> dict:
    """The reference's step on the global batch: the same for every process count, so
    computed once."""
    x, y = batch(global_batch)
    return data_parallel_step(x, y, devices=global_batch // SPAN)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def assert_states_close(actual: dict, expected: dict, what: str) -> None:
    assert set(actual) == set(expected)
    for name, tensor in actual.items():
        torch.testing.assert_close(tensor, expected[name], rtol=RTOL, atol=ATOL,
                                   msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize(("world", "global_batch"), [
    (1, 16), (2, 16), (4, 16),
    (8, 16),  # 2 clips per process: statistics over groups of 2 ranks
    (4, 4),  # 1 clip per process: one group of 4 ranks (as 16 processes at batch 16)
])
def test_one_step_equals_data_parallel_over_chunks_of_four(world, global_batch, tmp_path):
    reference = reference_step(global_batch)
    # Forked, not spawned: the children start with torch and the model code imported, which
    # is most of their time here. Safe because no OpenMP thread pool has been started:
    # every process of this module runs on one thread.
    mp.start_processes(ddp_worker, nprocs=world, start_method="fork",
                       args=(world, global_batch, str(tmp_path / "init"), str(tmp_path)))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    # Each process's loss is the mean over its clips; the global loss is their mean.
    loss = sum(r["loss"] for r in results) / world
    assert loss == pytest.approx(reference["loss"], rel=1e-12)
    initial = build_model().state_dict()
    for rank, result in enumerate(results):
        assert_states_close(result["grads"], reference["grads"], f"rank {rank} gradient")
        assert_states_close(result["state"], reference["state"], f"rank {rank} after sync")
        # Before the broadcast: rank 0 holds the reference's running statistics (chunk 0's
        # update); the other ranks have not updated theirs.
        expected = reference["state"] if rank == 0 else {
            **reference["state"],
            **{k: v for k, v in initial.items() if "running" in k or "num_batches" in k}}
        assert_states_close(result["before_sync"], expected, f"rank {rank} before sync")
    stats = [k for k in initial if k.endswith("running_mean")]
    assert stats and not torch.allclose(reference["state"][stats[0]], initial[stats[0]])
