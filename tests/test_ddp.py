"""DistributedDataParallel over two processes (gloo, loopback) gives one process's gradients."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastkan import FastKAN

LAYERS = [6, 8, 3]  # a frozen grid and LayerNorm: the fused paths' state rides along with the parameters


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, LAYERS[0], generator=g), torch.randn(16, LAYERS[-1], generator=g)


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(FastKAN(LAYERS))
        x, y = _data()
        part = slice(rank * 8, rank * 8 + 8)
        torch.nn.functional.mse_loss(model(x[part]), y[part]).backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.module.named_parameters() if p.grad is not None}, out)
        # Both ranks leave together: a rank that tore its group down while the other still used it
        # aborted once in CI ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_give_one_process_gradients(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    torch.manual_seed(0)
    model = FastKAN(LAYERS)
    x, y = _data()
    torch.nn.functional.mse_loss(model(x), y).backward()
    got = torch.load(out)
    want = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and len(want) == 10
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
