"""One measurement of a flowsr preset: build, warm up, time, count FLOPs, record memory.

:func:`run_measurement` runs one *job* (a preset, an operation and its settings) in this
process; :func:`run_job` runs it in a fresh process (``python -m flowsr.bench --worker JOB``) so
the peak RSS is that measurement's alone. The operations:

* ``encode``  -- HR -> LR/latents (for SR models the log-determinant of the flow),
* ``decode``  -- LR -> one HR sample (latents drawn inside),
* ``train``   -- forward + backward + Adam step on the model's training loss,
* ``samples`` -- ``N`` diverse HR samples of one LR in one batched call (``samples_repeat``:
  the LR repeated ``N`` times, i.e. without sharing the LR-only features),
* ``tiled``   -- a 512x512 LR to 2048x2048 HR in tiles (:func:`flowsr.inference.super_resolve`).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from flowsr.bench.presets import PRESETS, Preset, crop_inputs, large_lr, make_nontrivial
from flowsr.bench.system import calibrate, count_flops, cpu_busy, loadavg, maxrss_mib, rss_now_mib, sync

__all__ = ["DEFAULT_OPS", "OPS", "RESULT_TAG", "is_variant", "run_job", "run_measurement", "worker_main"]

RESULT_TAG = "FLOWSR_BENCH_RESULT "
OPS = ("encode", "decode", "train", "samples", "samples_repeat", "tiled")
DEFAULT_OPS = ("encode", "decode", "train", "samples")


def _generator(device, seed: int):
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def _diverse(model, lr, heat: float, n: int, g, share: bool = True):
    """``n`` samples of ``lr`` in one batched call, ``(n * B, C, H, W)``.

    ``share=False`` samples ``lr.repeat(n)`` (every LR-only feature recomputed per sample: the
    baseline of the shared-feature optimisation in :meth:`HierarchicalFlow.decode`)."""
    if not share:
        return model.sample(lr.repeat(n, 1, 1, 1), heat, generator=g)
    out = model.sample(lr, heat, n=n, generator=g)
    return out.reshape(-1, *out.shape[2:]) if n > 1 else out


def _make_op(op: str, model, preset: Preset, cfg: dict, device, channels_last: bool = False):
    """``(fn, hr_pixels_per_call, uses_grad)``: ``fn()`` runs the operation once and returns a
    tensor (training: the loss, before backward)."""
    import torch

    heat, seed, n = preset.heat, cfg["seed"], cfg["samples"]
    batch = cfg["batch"] if op == "train" else 1
    hr, lr = crop_inputs(preset, batch)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    hr, lr = hr.to(device, memory_format=fmt), lr.to(device, memory_format=fmt)
    pixels = hr.shape[0] * hr.shape[2] * hr.shape[3]

    if op == "encode":
        return (lambda: model.encode(hr, lr)[2]), pixels, False

    if op == "decode":
        return (lambda: model.upscale(lr, heat, generator=_generator(device, seed))), pixels, False

    if op in ("samples", "samples_repeat"):
        share = op == "samples"
        return (lambda: _diverse(model, lr, heat, n, _generator(device, seed), share)), pixels * n, False

    if op == "tiled":
        from flowsr import inference

        if not hasattr(inference, "tiled") or not hasattr(inference, "super_resolve"):
            raise RuntimeError("flowsr.inference.tiled / super_resolve are not available yet")
        big = large_lr(preset, preset.tiled_lr).to(device)
        out_pixels = (big.shape[2] * preset.scale) * (big.shape[3] * preset.scale)

        def tiled_fn():
            return inference.super_resolve(model, big, heat, _generator(device, seed), tile=preset.tile)

        return tiled_fn, out_pixels, False

    if op == "train":
        from flowsr.models.base import GeneratorNoise

        losses = {w: 1.0 for w in model.objective_weights}

        def loss_fn():
            noise = GeneratorNoise(hr.shape[0], _generator("cpu", seed), device=device)
            return model.training_losses(hr, lr, noise, losses)["total"]

        return loss_fn, pixels, True
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


def _deviation(out, ref) -> dict[str, float] | None:
    import torch

    if not isinstance(out, torch.Tensor) or not isinstance(ref, torch.Tensor) or out.shape != ref.shape:
        return None
    d = (out.detach().float() - ref.detach().float()).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def _autocast(device, amp: str | None):
    """bf16 autocast for ``amp == "bf16"``, nothing for ``None``."""
    import torch

    if amp is None:
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"amp must be 'bf16' here, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def is_variant(job: dict) -> bool:
    return job.get("amp") not in (None, "none") or bool(job.get("compile")) or bool(job.get("channels_last"))


class _Bf16Features:
    """Runs a model's conditioning networks (HCFlow feature extractors, SRFlow's LR encoder)
    under bf16 autocast and hands float32 features to the flow, which stays in float32."""

    def __init__(self, model, device):
        import torch

        self.model, self.device, self.undo = model, device, []

        def wrap(fn):
            def wrapped(*args, **kwargs):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    out = fn(*args, **kwargs)
                if isinstance(out, (list, tuple)):
                    return type(out)(o.float() for o in out)
                return out.float()

            return wrapped

        for level in getattr(getattr(model, "flow", None), "levels", []):
            if getattr(level, "features", None) is not None and not _is_kept_part(level.features):
                self._patch(level.features, "forward", wrap)
        encoder = getattr(model, "encoder", None)
        if encoder is not None and hasattr(encoder, "level_features"):
            self._patch(encoder, "level_features", wrap)
        if not self.undo:
            raise ValueError(f"{type(model).__name__} has no conditioning network to run in bf16")

    def _patch(self, obj, name, wrap):
        setattr(obj, name, wrap(getattr(obj, name)))
        self.undo.append((obj, name))

    def restore(self):
        for obj, name in self.undo:
            delattr(obj, name)  # back to the class attribute
        self.undo = []


def _is_kept_part(module) -> bool:
    return type(module).__name__ == "KeptPart"


def run_measurement(job: dict) -> dict:
    """Run one measurement in this process and return its result dict (see :func:`run`)."""
    import torch

    t_start = time.perf_counter()
    threads = int(job.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    keys = ("preset", "op", "batch", "samples", "amp", "compile", "channels_last")
    result: dict[str, Any] = {k: job.get(k) for k in keys}
    result.update(threads=threads, load_before=loadavg(), rss_start_mib=rss_now_mib())
    device = torch.device(job.get("device") or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA requested but not available")
    if job["op"] == "calibrate":
        result["calibration"] = calibrate(device, job.get("calib_seconds", 1.0), bf16=bool(job.get("amp")))
        result["load_after"] = loadavg()
        return result

    preset = PRESETS[job["preset"]]
    op, amp = job["op"], job.get("amp")
    torch.manual_seed(job.get("seed", 0))
    model = make_nontrivial(preset.build(), job.get("seed", 0), crop_inputs(preset), preset.output_std).to(device)
    result["params"] = sum(p.numel() for p in model.parameters())
    channels_last = bool(job.get("channels_last"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn, pixels, grad = _make_op(op, model, preset, job, device, channels_last)
    result["hr_pixels"] = pixels
    bf16_features = _Bf16Features(model, device) if amp == "bf16-features" else None
    full_amp = "bf16" if amp == "bf16" else None
    compiled = torch.compile(fn) if job.get("compile") else fn
    if grad:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-6)

        def timed():
            with _autocast(device, full_amp):
                loss = compiled()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

    else:
        model.eval()

        def timed():
            with torch.no_grad(), _autocast(device, full_amp):
                return compiled()

    result["rss_build_mib"] = rss_now_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # warm-up (the first call also compiles), then the timed calls
    first = None
    for i in range(int(job.get("warmup", 1))):
        sync(device)
        t0 = time.perf_counter()
        timed()
        sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    result["first_call_s"] = first
    times, cpu_times = [], []
    busy0, cpu0 = cpu_busy(), time.process_time()
    wall0 = time.perf_counter()
    out = None
    for _ in range(max(1, int(job.get("repeats", 3)))):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = timed()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    wall = time.perf_counter() - wall0
    busy1, cpu1 = cpu_busy(), time.process_time()
    result["peak_rss_mib"] = maxrss_mib()
    if device.type == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result.update(times=times, cpu_times=cpu_times, median=statistics.median(times), min=min(times), max=max(times))
    if busy0 is not None and busy1 is not None and wall > 0:
        others = (busy1[0] - busy0[0]) - (cpu1 - cpu0)
        result["others_cpu"] = max(0.0, others / wall)  # cores' worth of CPU used by other processes
    result["cpu_per_wall"] = (cpu1 - cpu0) / wall if wall > 0 else None
    result["load_after"] = loadavg()
    result["finite"] = bool(torch.isfinite(out).all()) if isinstance(out, torch.Tensor) else None
    if isinstance(out, torch.Tensor) and out.numel():
        result["output_mean"] = float(out.detach().float().mean())

    # numerics of a variant (amp / compile / channels-last) against the float32 eager run
    if is_variant(job) and op != "tiled":
        with torch.no_grad():
            if grad:
                with _autocast(device, full_amp):
                    out = compiled()
            if bf16_features is not None:
                bf16_features.restore()
            if channels_last:
                model = model.to(memory_format=torch.contiguous_format)
            ref_fn, _, _ = _make_op(op, model, preset, job, device, False)
            result["deviation"] = _deviation(out, ref_fn())
    else:
        ref_fn = fn
        if bf16_features is not None:
            bf16_features.restore()
    if job.get("flops", True):
        if grad:
            result["flop"] = count_flops(lambda: ref_fn().backward())
        else:
            with torch.no_grad():
                result["flop"] = count_flops(ref_fn)
    result["total_s"] = time.perf_counter() - t_start
    return result


def run_job(job: dict, in_process: bool, timeout: float | None) -> dict:
    """One measurement, in a fresh subprocess (for the peak RSS) unless ``in_process``."""
    before = loadavg()
    if in_process:
        try:
            res = run_measurement(job)
            res["in_process"] = True
        except Exception as err:  # noqa: BLE001 - reported in the table
            res = {**job, "error": f"{type(err).__name__}: {err}"}
        res.setdefault("load_before", before)
        res.setdefault("load_after", loadavg())
        return res
    cmd = [sys.executable, "-m", "flowsr.bench", "--worker", json.dumps(job)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(job.get("threads") or ""))
    if not env["OMP_NUM_THREADS"]:
        del env["OMP_NUM_THREADS"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout} s", "load_before": before, "load_after": loadavg()}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG) :])
            res["load_before"] = before  # as seen from outside, before the process started
            res["load_after"] = loadavg()
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**job, "error": " | ".join(tail) or f"worker exited with {proc.returncode}", "load_before": before}


def worker_main(payload: str) -> int:
    job = json.loads(payload)
    try:
        res = run_measurement(job)
    except Exception as err:  # noqa: BLE001 - reported in the table
        import traceback

        traceback.print_exc()
        res = {**job, "error": f"{type(err).__name__}: {_one_line(err)}"}
    print(RESULT_TAG + json.dumps(res), flush=True)
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")
