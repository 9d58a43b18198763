"""Memory of one pass, measured apart from the timed runs."""

from __future__ import annotations

import torch


def saved_tensor_bytes(model: torch.nn.Module, run) -> int:
    """Bytes of the tensors that ``run()`` saves for backward, parameters excluded.

    Exact and deterministic: every saved tensor passes through the pack hook;
    storages are counted once however many views of them are saved.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    del out
    return sum(seen.values())


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    # Linux resets the VmHWM high-water mark when "5" is written to clear_refs.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_increase(run) -> int | None:
    """How far the resident set rose above its starting point while ``run()`` ran (Linux), else None."""
    start = _status_bytes("VmRSS")
    if start is None or not _reset_peak_rss():
        run()
        return None
    run()
    peak = _status_bytes("VmHWM")
    return None if peak is None else max(0, peak - start)


def cpu_peak_alloc_bytes(run) -> int:
    """Peak of the bytes that ``run()`` allocates on the CPU and has not freed yet.

    Exact and deterministic, from the profiler's allocation events; blocks
    that existed before ``run()`` are not counted, even when it frees them.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    peak = total = 0
    for _, nbytes in events:
        total += nbytes
        peak = max(peak, total)
    return peak


def cuda_peak_bytes(run, device: torch.device) -> int:
    """``max_memory_allocated`` over ``run()``, reset just before it (parameters and gradients included)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def measure(setup) -> dict:
    """The memory fields of a case's ``extra_info``, from one untimed run of its pass."""
    prepare, run = setup.pass_fns()
    info = {"saved_bytes": saved_tensor_bytes(setup.eager, setup.loss)}

    def phase():
        # A fresh untimed setup per measurement: a backward needs its own graph.
        args, kwargs = prepare()
        return lambda: run(*args, **kwargs)

    if setup.device.type == "cuda":
        info["cuda_peak_bytes"] = cuda_peak_bytes(phase(), setup.device)
    else:
        info["peak_rss_delta"] = peak_rss_increase(phase())
        info["cpu_peak_bytes"] = cpu_peak_alloc_bytes(phase())
    setup.optimizer.zero_grad(set_to_none=True)
    return info
