"""``flowsr bench --official PATH``: flowsr and the official code, side by side, in one process.

For each preset an official checkout covers (:data:`~flowsr.bench.official.OFFICIAL_PRESETS`):

1. the official network is built from the official options with the repository's own classes
   (:mod:`flowsr.bench.official`); its weights are made non-trivial by loading those of a flowsr
   twin given :func:`~flowsr.bench.presets.make_nontrivial` weights (data-initialised ActNorms,
   calibrated zero-initialised layers: numerically like a trained net, seeded);
2. the official network's **own** state dict is converted by :func:`flowsr.convert.load_official`
   into the flowsr model that is timed;
3. outputs are compared (:func:`check`): the forward's LR / latents / NLL with the official
   dequantisation noise, the reverse and the ``N`` samples on the latents the official reverse
   drew, a training iteration with the official draws replayed; a row whose outputs disagree
   gets no ratio;
4. both are timed interleaved (:func:`interleave`): warm-up, then rounds alternating which goes
   first, median and min, and the CPU other processes used meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from flowsr.bench.official import (
    OFFICIAL_PRESETS,
    REPOS,
    Checkout,
    OfficialPreset,
    OfficialRepo,
    detect_repo,
    official_imports,
    record_draws,
)
from flowsr.bench.official_train import TRAIN_STEP, FlowsrTrainer, OfficialTrainer, check_training, train_options
from flowsr.bench.presets import PRESETS, Preset, crop_inputs, make_nontrivial
from flowsr.bench.report import BUSY
from flowsr.bench.system import count_flops, cpu_busy

__all__ = ["SIDE_OPS", "Pair", "build_pair", "check", "interleave", "measure_all", "measure_pair"]

SIDE_OPS = ("encode", "decode", "samples", "train")


@dataclasses.dataclass
class Pair:
    """One preset, official and flowsr, on the same weights and input."""

    name: str
    preset: Preset
    checkout: Checkout
    repo: OfficialRepo
    net: torch.nn.Module
    model: Any
    hr: torch.Tensor
    lr: torch.Tensor
    stubs: list[str]
    trainers: tuple[OfficialTrainer, FlowsrTrainer] | None = None
    noise: torch.Tensor | None = None  # the official forward's dequantisation noise (SR)


def build_pair(
    name: str,
    checkout: Checkout,
    *,
    seed: int = 0,
    train_batch: int = 0,
    repos: Mapping[str, OfficialRepo] = REPOS,
    presets: Mapping[str, OfficialPreset] = OFFICIAL_PRESETS,
) -> Pair:
    """Build the official network of preset ``name`` from ``checkout`` and the flowsr model
    converted from its state dict (steps 1-2 of the module docstring); ``train_batch > 0`` also
    builds both training steps on a batch of that many crops."""
    from flowsr.convert import converter_for, load_official, official_presets

    off, preset = presets[name], PRESETS[name]
    repo = repos[checkout.repo]
    opt = official_presets()[f"{off.converter}:{off.options}"]
    hr, lr = crop_inputs(preset)
    conv = converter_for(opt)
    torch.manual_seed(seed)
    twin = make_nontrivial(conv.model_from_opt(opt), seed, (hr, lr), preset.output_std)
    twin_state = twin.state_dict()
    trainers = None
    # the official constructors print their layer shapes: kept off the report
    with official_imports(checkout.code) as code, contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        net = repo.build(code, opt)
        keys = list(net.state_dict())
        mapping = conv.key_map(twin, keys)
        net.load_state_dict({k: twin_state[mapping[k]].clone() for k in keys}, strict=True)
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}  # the official net's own
        if train_batch and off.train_yml:
            topt = train_options(checkout.code, off.train_yml, opt)
            hr_b, lr_b = crop_inputs(preset, train_batch)
            official_trainer = OfficialTrainer.build(code, topt, state, hr_b, lr_b)
    model = load_official(state, opt)
    if train_batch and off.train_yml:
        ours = FlowsrTrainer.build(load_official(state, opt), topt, hr_b, lr_b, seed)
        trainers = (official_trainer, ours)
    return Pair(name, preset, checkout, repo, net.eval(), model.eval(), hr, lr, list(code.stubs), trainers)


# -- agreement --------------------------------------------------------------------------------------


def _dev(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """``(max |a - b|, that over max(1, max |b|))``."""
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        return float("inf"), float("inf")
    d = float((a - b).abs().max()) if a.numel() else 0.0
    return d, d / max(1.0, float(b.abs().max()) if b.numel() else 1.0)


def _flowsr_encode_outputs(pair: Pair, official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model, hr, lr = pair.model, pair.hr, pair.lr
    y, zs, _ = model.encode(hr, lr)
    out: dict[str, torch.Tensor] = {}
    if "nll" in official:
        r = model.nll(hr, lr, noise=pair.noise)
        out["nll"] = r.nll.mean() if official["nll"].dim() == 0 else r.nll
        y = r.lr
    if "lr" in official:
        out["lr"] = y.clamp(0, 1) if pair.repo.clamps else y
    return {**match_latents({k: v for k, v in official.items() if k not in out}, zs), **out}


def match_latents(official: Mapping[str, torch.Tensor], zs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """For each official latent, the first unused flowsr latent of its shape (the official
    forwards return theirs in their own order)."""
    unused, out = list(zs), {}
    for key, value in official.items():
        index = next((i for i, z in enumerate(unused) if z.shape == value.shape), None)
        if index is not None:
            out[key] = unused.pop(index)  # by position: tensors do not compare with ==
    return out


def _official_samples(pair: Pair, n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    outs, latents = [], []
    for _ in range(n):
        with record_draws() as draws:
            outs.append(pair.repo.decode(pair.net, pair.lr, pair.preset.heat))
        latents.append(pair.repo.latents(draws))
    return torch.stack(outs), [torch.cat(level) for level in zip(*latents)]


def check(pair: Pair, op: str, n: int = 8) -> dict[str, Any]:
    """Compare the outputs of ``op`` (see the module docstring): ``{"max_abs", "rel", "what"}``
    (``rel``: the deviation over ``max(1, max |official output|)``, for samples over the raw
    official outputs' size as ``sample`` clamps; for training the relative loss difference)."""
    with contextlib.nullcontext() if op == "train" else torch.no_grad():  # training needs gradients
        if op == "encode":
            with record_draws() as draws:
                official = pair.repo.encode(pair.net, pair.hr, pair.lr)
            uniform = [t for kind, t in draws if kind == "uniform"]
            pair.noise = uniform[0] if uniform else None
            ours = _flowsr_encode_outputs(pair, official)
            devs = {k: _dev(ours[k], v) if k in ours else (float("inf"), float("inf")) for k, v in official.items()}
        elif op == "decode":
            with record_draws() as draws:
                x = pair.repo.decode(pair.net, pair.lr, pair.preset.heat)
            y = pair.model.upscale(pair.lr, zs=pair.repo.latents(draws), clamp=pair.repo.clamps)
            devs = {"hr": _dev(y, x)}
        elif op == "samples":
            x, zs = _official_samples(pair, n)
            pair.model.sample_latents = lambda *args, **kwargs: [z.clone() for z in zs]  # the official draws
            try:
                y = pair.model.sample(pair.lr, pair.preset.heat, n=n)
            finally:
                del pair.model.sample_latents
            # sample() clamps: the clamped images are compared, relative to the raw outputs' size
            d = float((y.double() - x.clamp(0, 1).double()).abs().max())
            devs = {"samples": (d, d / max(1.0, float(x.abs().max())))}
        else:
            res = check_training(*pair.trainers, TRAIN_STEP) if pair.trainers else None
            if res is None:
                return {"max_abs": float("nan"), "rel": float("inf"), "what": "no training step"}
            devs = {k: (abs(a - b), abs(a - b) / max(1.0, abs(a))) for k, (a, b) in res["terms"].items()}
            if res["unmatched"]:
                devs.update({k: (float("inf"), float("inf")) for k in res["unmatched"]})
    worst = max(devs, key=lambda k: devs[k][1])
    return {"max_abs": devs[worst][0], "rel": devs[worst][1], "what": worst, "all": devs}


# -- timing -----------------------------------------------------------------------------------------


def interleave(
    official: Callable[[], Any],
    flowsr: Callable[[], Any],
    rounds: int,
    warmup: int = 1,
    warm_official: Callable[[], Any] | None = None,
    flops: bool = False,
) -> dict[str, Any]:
    """Time ``official`` and ``flowsr`` alternately (who goes first alternates by round) after
    ``warmup`` calls of each: ``{"official": [s], "flowsr": [s], "others_cpu": cores}`` where
    ``others_cpu`` is the CPU other processes used meanwhile (cores' worth; 0 = idle machine).
    ``flops``: also ``"flop"``, flowsr's conv/matmul FLOPs, counted during its first warm-up
    call (untimed), which saves a call per row."""
    flop = None
    for i in range(warmup):
        (warm_official or official)()
        if flops and i == 0:
            flop = count_flops(flowsr)
        else:
            flowsr()
    times: dict[str, list[float]] = {"official": [], "flowsr": []}
    busy0, own0, wall0 = cpu_busy(), time.process_time(), time.perf_counter()
    for r in range(rounds):
        order = [("official", official), ("flowsr", flowsr)]
        for side, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t0)
    busy1, own1, wall = cpu_busy(), time.process_time(), time.perf_counter() - wall0
    others = None
    if busy0 is not None and busy1 is not None and wall > 0:
        others = max(0.0, ((busy1[0] - busy0[0]) - (own1 - own0)) / wall)
    return {**times, "others_cpu": others, **({"flop": flop} if flop is not None else {})}


def _ops(pair: Pair, op: str, n: int, seed: int) -> tuple[Callable, Callable, Callable | None]:
    """``(official, flowsr, official warm-up)`` callables of ``op``."""
    net, model, repo, lr, heat = pair.net, pair.model, pair.repo, pair.lr, pair.preset.heat
    g = torch.Generator().manual_seed(seed)
    if op == "encode":
        if model.task == "sr":
            return (lambda: repo.encode(net, pair.hr, lr)), (lambda: model.nll(pair.hr, lr, noise=pair.noise)), None
        return (lambda: repo.encode(net, pair.hr, lr)), (lambda: model.encode(pair.hr, lr)), None
    if op == "decode":
        return (lambda: repo.decode(net, lr, heat)), (lambda: model.upscale(lr, heat, generator=g)), None
    if op == "samples":

        def official_n():
            for _ in range(n):
                repo.decode(net, lr, heat)

        return official_n, (lambda: model.sample(lr, heat, n=n, generator=g)), (lambda: repo.decode(net, lr, heat))
    official_trainer, flowsr_trainer = pair.trainers
    return official_trainer.step, flowsr_trainer.step, None


def measure_pair(
    pair: Pair, op: str, *, rounds: int, n: int = 8, tolerance: float = 1e-5, seed: int = 0, flops: bool = True
) -> dict[str, Any]:
    """Check and time one row (preset x op); the result dict of the report."""
    row: dict[str, Any] = {"preset": pair.name, "op": op, "repo": pair.checkout.repo, "samples": n, "stubs": pair.stubs}
    if op == "train" and pair.trainers is None:
        return {**row, "skip": "no official training step for this preset"}
    if op == "train":
        row["batch"] = pair.trainers[0].hr.shape[0]
        row["train_driver"] = "official model class: update_learning_rate + feed_data + optimize_parameters"
    try:
        row["check"] = check(pair, op, n)
    except Exception as err:  # noqa: BLE001 - reported in the table
        return {**row, "error": f"check failed: {type(err).__name__}: {err}"}
    row["agree"] = bool(row["check"]["rel"] <= tolerance)
    official, ours, warm = _ops(pair, op, n, seed)
    grad = contextlib.nullcontext() if op == "train" else torch.no_grad()
    with grad:
        row.update(interleave(official, ours, rounds, 1, warm, flops=flops and op != "train"))
    for side in ("official", "flowsr"):
        row[f"{side}_median"], row[f"{side}_min"] = statistics.median(row[side]), min(row[side])
    row["ratio"] = row["flowsr_median"] / row["official_median"] if row["agree"] else None
    row["hr_pixels"] = pair.hr.shape[-1] * pair.hr.shape[-2] * (n if op == "samples" else row.get("batch", 1))
    return row


def measure_all(args, say: Callable[..., None]) -> list[dict[str, Any]]:
    """Every row the arguments ask for (presets covered by the ``--official`` checkouts)."""
    checkouts = {c.repo: c for c in map(detect_repo, args.official)}
    names = list(args.preset or [p for p in OFFICIAL_PRESETS if OFFICIAL_PRESETS[p].repo in checkouts])
    ops = [op for op in (args.ops or SIDE_OPS) if op in SIDE_OPS]
    rounds = 3 if args.quick else args.rounds
    results = []
    for name in names:
        off = OFFICIAL_PRESETS.get(name)
        if off is None or off.repo not in checkouts:
            results.append({"preset": name, "op": "-", "skip": "no --official checkout covers it"})
            continue
        t0 = time.perf_counter()
        try:
            batch = args.train_batch if "train" in ops else 0
            pair = build_pair(name, checkouts[off.repo], seed=args.seed, train_batch=batch)
        except Exception as err:  # noqa: BLE001 - reported in the table
            results.append({"preset": name, "op": "-", "error": f"build failed: {type(err).__name__}: {err}"})
            say(f"  {name}: build failed: {err}")
            continue
        say(f"  {name}: built in {time.perf_counter() - t0:.0f} s (stubs: {', '.join(pair.stubs) or 'none'})")
        for op in ops:
            if op == "train" and not off.train_yml:
                continue  # no official training step measured for this preset
            row = measure_pair(
                pair,
                op,
                rounds=rounds,
                n=args.samples,
                tolerance=args.tolerance,
                seed=args.seed,
                flops=not args.no_flops,
            )
            results.append(row)
            say("  " + _progress(row))
            if args.rerun_busy and (row.get("others_cpu") or 0) > BUSY:
                again = measure_pair(
                    pair, op, rounds=rounds, n=args.samples, tolerance=args.tolerance, seed=args.seed, flops=False
                )
                again["rerun"] = True
                results.append(again)
                say("  " + _progress(again))
    return results


def _progress(row: Mapping[str, Any]) -> str:
    head = f"{row['preset']} {row['op']}" + (" (re-run)" if row.get("rerun") else "")
    if row.get("skip") or row.get("error"):
        return f"{head}: {row.get('skip') or row.get('error')}"
    ratio = "no ratio: outputs disagree" if row["ratio"] is None else f"flowsr / official {row['ratio']:.2f}x"
    return (
        f"{head}: official {row['official_median']:.3f} s, flowsr {row['flowsr_median']:.3f} s, {ratio}; "
        f"max deviation {row['check']['max_abs']:.2g} ({row['check']['what']}), "
        f"others' CPU {row['others_cpu'] or 0:.2f}"
    )
