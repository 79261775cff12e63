"""EquivariantBatchNorm under DistributedDataParallel: statistics averaged over processes."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cathnet.nn import EquivariantBatchNorm, FieldType, convert_sync_batchnorm

T = FieldType.parse("0x0 + 2x1 + 1x2")  # no scalars: the l > 0 path alone (SyncBatchNorm needs a GPU)


def _worker(rank, port, x, out):
    # the store is hosted by the parent, as torchrun's agent does
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        bn = convert_sync_batchnorm(torch.nn.Sequential(EquivariantBatchNorm(T))).train()
        part = x.chunk(2)[rank].clone().requires_grad_(True)
        y = bn(part)
        y.pow(2).sum().backward()
        out[rank] = (y.detach(), part.grad, bn[0].running_sq.clone())
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_on_the_whole_batch():
    torch.manual_seed(0)
    x = torch.randn(4, T.dim, 5, 5, 5) * torch.linspace(0.5, 3, T.dim).view(1, -1, 1, 1, 1)
    manager = mp.Manager()
    out = manager.dict()
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    mp.spawn(_worker, args=(store.port, x, out), nprocs=2, join=True)

    bn = EquivariantBatchNorm(T).train()
    whole = x.clone().requires_grad_(True)
    y = bn(whole)
    y.pow(2).sum().backward()
    torch.testing.assert_close(torch.cat([out[0][0], out[1][0]]), y.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([out[0][1], out[1][1]]), whole.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[0][2], bn.running_sq)
    # without synchronisation the halves are normalised differently
    local = EquivariantBatchNorm(T).train()(x.chunk(2)[0])
    assert not torch.allclose(local, y.detach()[:2], atol=1e-3)
