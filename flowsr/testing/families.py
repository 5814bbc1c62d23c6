"""The model-family contract: what every registered :class:`~flowsr.models.FlowSRModel` family does.

Each check is a function ``check(cls, preset)`` of a family class and one of its presets; it
builds a tiny model of that preset with :func:`tiny_model` (the family's own ``shrink_spec``,
weights perturbed off the zero-initialised identity) and asserts one part of the interface:

* ``"round_trip"`` (float64): ``decode(encode(hr)) == hr`` to 1e-10, a ``(B,)`` log-det, the LR
  output at ``1 / scale`` of the HR size;
* ``"latents"``: the latents of ``encode`` have ``latent_shapes``; ``sample_latents`` draws those
  shapes from the generator, scaled by the temperature;
* ``"sample"``: ``(B, C, sH, sW)`` for ``n = 1``, ``(n, B, C, sH, sW)`` for ``n > 1``, in
  ``[0, 1]``, reproducible from a generator, identical samples at temperature 0, ``n = 1`` the
  same as ``upscale``;
* ``"upscale_downscale"``: ``upscale`` with given latents is ``decode`` (clamped unless
  ``clamp=False``); rescaling families' ``downscale`` is the clamped, 8-bit LR output of
  ``encode``; SR families refuse ``downscale``;
* ``"training"``: ``training_losses`` returns the finite terms ``loss_terms`` names plus ``total``,
  and its gradient reaches every parameter; a family declaring ``has_unused_parameters`` must
  have some parameter without a gradient, and those parameters must change no output of the
  interface (truly unused, not disconnected by mistake);
* ``"save_load"``: :func:`flowsr.models.save` / :func:`flowsr.models.load` give the same class,
  config, weights and outputs; ``model_info`` reads family, task and scale;
* ``"config"``: ``config()`` is JSON and ``from_config`` rebuilds an identical model;
* ``"bad_input"``: ``ValueError`` naming the model for wrong channels, sizes not divisible,
  NaN, another dtype, wrong latent count / shape, bad temperature, generator or ``n``;
* ``"registry"``: the family is registered under its name, with a task, presets that give
  specs, and the attributes the interface promises.

:func:`check_family` runs them all; ``tests/test_contract_families.py`` runs them over all
registered families (:data:`flowsr.models.FAMILIES`), including families registered later.
"""

from __future__ import annotations

import functools
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flowsr.models.base import FAMILIES, TASKS, FlowSRModel, GeneratorNoise, get_family
from flowsr.models.checkpoint import load, model_info, save
from flowsr.testing.cases import seeded
from flowsr.testing.prepare import default_dtype, perturb_parameters

__all__ = ["FAMILY_CHECKS", "check_family", "family_images", "tiny_model"]

BATCH = 2


def tiny_model(
    cls: type[FlowSRModel], preset: str | None = None, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> FlowSRModel:
    """A tiny model of ``preset`` (default: the family's first): ``cls(cls.shrink_spec(cls.preset_spec(preset)))``
    built in ``dtype`` from a seeded RNG, its weights perturbed by ``N(0, 0.02^2)`` (flows start
    as the identity), in eval mode."""
    preset = cls.presets[0] if preset is None else preset
    with default_dtype(dtype), seeded(seed):
        model = cls(cls.shrink_spec(cls.preset_spec(preset)))
    # 0.02: far enough from the identity to test the maths, close enough that untrained deep
    # tiny models (exp-scale priors) still sample finite images at temperature 1
    return perturb_parameters(model, seed=seed, scale=0.02).eval()


def family_images(model: FlowSRModel, *, batch: int = BATCH, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(hr, lr)`` for ``model``: a random HR batch in [0, 1] of the model's dtype, with an LR of
    ``(2, 3)`` times ``lr_multiple`` pixels, and its box-filtered LR."""
    ref = next(model.parameters())
    m = model.lr_multiple
    h, w = 2 * m * model.scale, 3 * m * model.scale
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, model.in_channels, h, w, generator=g, dtype=torch.float64).to(ref.dtype)
    return hr, F.avg_pool2d(hr, model.scale)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _shapes(ts: Sequence[Tensor]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in ts]


def _fail(model: FlowSRModel, what: str) -> AssertionError:
    return AssertionError(f"{type(model).__name__} ({model.family}): {what}")


# -- the checks ----------------------------------------------------------------------------------------


def check_round_trip(cls: type[FlowSRModel], preset: str) -> None:
    """float64: ``decode(encode(hr)) == hr`` to 1e-10; log-det ``(B,)`` and finite; LR size."""
    model = tiny_model(cls, preset, dtype=torch.float64)
    hr, lr = family_images(model)
    lr_out, zs, logdet = model.encode(hr, lr)
    if tuple(lr_out.shape) != tuple(lr.shape):
        raise _fail(model, f"encode's LR has shape {tuple(lr_out.shape)}, expected {tuple(lr.shape)}")
    if tuple(logdet.shape) != (BATCH,) or not bool(torch.isfinite(logdet).all()):
        raise _fail(model, f"encode's log-det must be a finite ({BATCH},) tensor, got {logdet}")
    back = model.decode(lr_out, zs)
    err = float((back - hr).detach().abs().max())
    if not err <= 1e-10:
        raise _fail(model, f"decode(encode(hr)) differs from hr by {err:.3e} in float64 (> 1e-10)")


def check_latents(cls: type[FlowSRModel], preset: str) -> None:
    """Latent shapes of ``encode`` == ``latent_shapes``; ``sample_latents`` follows them."""
    model = tiny_model(cls, preset)
    hr, lr = family_images(model)
    expected = model.latent_shapes(lr.shape[2:], BATCH)
    _, zs, _ = model.encode(hr, lr)
    if _shapes(zs) != [tuple(s) for s in expected]:
        raise _fail(model, f"encode gives latents {_shapes(zs)}, latent_shapes says {expected}")
    if [s[1:] for s in model.latent_shapes(lr.shape[2:])] != [s[1:] for s in expected] or any(
        s[0] != 1 for s in model.latent_shapes(lr.shape[2:])
    ):
        raise _fail(model, "latent_shapes(lr_size) must default to batch 1")
    drawn = model.sample_latents(lr, 1.0, _generator(3))
    if _shapes(drawn) != _shapes(zs) or any(z.dtype != lr.dtype or z.device != lr.device for z in drawn):
        raise _fail(model, f"sample_latents gives {_shapes(drawn)}, expected {_shapes(zs)} of the LR's dtype")
    again = model.sample_latents(lr, 0.5, _generator(3))
    if not all(torch.allclose(a, 0.5 * d) for a, d in zip(again, drawn)):
        raise _fail(model, "sample_latents at temperature 0.5 must be half those at 1 from the same generator")
    if not all(bool((z == 0).all()) for z in model.sample_latents(lr, 0.0)):
        raise _fail(model, "sample_latents at temperature 0 must be zeros")


def check_sample(cls: type[FlowSRModel], preset: str) -> None:
    """``sample`` shapes for n = 1 and n > 1, range, reproducibility, temperature 0."""
    model = tiny_model(cls, preset)
    hr, lr = family_images(model)
    one = model.sample(lr, generator=_generator(0))  # the default temperature
    if tuple(one.shape) != tuple(hr.shape):
        raise _fail(model, f"sample(lr) has shape {tuple(one.shape)}, expected {tuple(hr.shape)}")
    many = model.sample(lr, 0.7, n=3, generator=_generator(1))
    if tuple(many.shape) != (3, *hr.shape):
        raise _fail(model, f"sample(lr, n=3) has shape {tuple(many.shape)}, expected {(3, *hr.shape)}")
    for name, x in (("sample(lr)", one), ("sample(lr, n=3)", many)):
        if not (float(x.detach().min()) >= 0 and float(x.detach().max()) <= 1):
            raise _fail(model, f"{name} is not clamped to [0, 1]")
    if not torch.equal(many, model.sample(lr, 0.7, n=3, generator=_generator(1))):
        raise _fail(model, "sample is not reproducible from a seeded generator")
    mean = model.sample(lr, 0.0, n=2)
    # equal up to float32 round-off: convolution kernels may round rows of a batch differently
    if not torch.allclose(mean[0], mean[1], rtol=0, atol=1e-5):
        raise _fail(model, "the n samples at temperature 0 differ")
    if not torch.equal(model.sample(lr, 0.7, generator=_generator(2)), model.upscale(lr, 0.7, _generator(2))):
        raise _fail(model, "sample(lr, T, n=1, generator) differs from upscale(lr, T, generator)")


def check_upscale_downscale(cls: type[FlowSRModel], preset: str) -> None:
    """``upscale`` with latents is ``decode``; ``downscale`` per task."""
    model = tiny_model(cls, preset)
    hr, lr = family_images(model)
    lr_out, zs, _ = model.encode(hr, lr)
    decoded = model.decode(lr_out, zs)
    if not torch.equal(model.upscale(lr_out, zs=zs, clamp=False), decoded):
        raise _fail(model, "upscale(lr, zs=zs, clamp=False) differs from decode(lr, zs)")
    if not torch.equal(model.upscale(lr_out, zs=zs), decoded.clamp(0, 1)):
        raise _fail(model, "upscale(lr, zs=zs) differs from decode(lr, zs) clamped to [0, 1]")
    up = model.upscale(lr, 0.7, _generator(0))
    if tuple(up.shape) != tuple(hr.shape) or float(up.detach().min()) < 0 or float(up.detach().max()) > 1:
        raise _fail(model, f"upscale(lr) has shape {tuple(up.shape)} or leaves [0, 1]; expected {tuple(hr.shape)}")
    if model.task == "sr":
        _expect_value_error(model, "downscale of an SR model", lambda: model.downscale(hr))
        return
    lr8 = model.downscale(hr)
    if not torch.equal(lr8 * 255, (lr8 * 255).round()) or not torch.equal(lr8, lr8.clamp(0, 1)):
        raise _fail(model, "downscale(hr) must be 8-bit values in [0, 1]")
    if not torch.equal(model.downscale(hr, quantize_8bit=False), lr_out.clamp(0, 1)):
        raise _fail(model, "downscale(hr, quantize_8bit=False) must be encode's LR clamped to [0, 1]")
    if tuple(model.upscale(lr8, generator=_generator(0)).shape) != tuple(hr.shape):
        raise _fail(model, "upscale(downscale(hr)) does not have the HR shape")


def _trainable(model: FlowSRModel) -> Iterator[tuple[str, torch.nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def _interface_outputs(model: FlowSRModel, hr: Tensor, lr: Tensor) -> list[Tensor]:
    with torch.no_grad():
        lr_out, zs, logdet = model.encode(hr, lr)
        return [lr_out, *zs, logdet, model.decode(lr_out, zs), model.sample(lr, 0.8, n=2, generator=_generator(4))]


def check_training(cls: type[FlowSRModel], preset: str) -> None:
    """``training_losses``: the terms ``loss_terms`` names, finite, and a gradient for every
    parameter but the declared unused ones, which must change no output."""
    model = tiny_model(cls, preset).train()
    hr, lr = family_images(model)
    losses = {name: 1.0 for name in cls.objective_weights}
    terms = model.training_losses(hr, lr, GeneratorNoise(BATCH, _generator(5)), losses)
    expected = [*cls.loss_terms(losses), "total"]
    if sorted(terms) != sorted(expected):
        raise _fail(model, f"training_losses returns {sorted(terms)}, loss_terms says {sorted(expected)}")
    for name, value in terms.items():
        if not isinstance(value, Tensor) or value.dim() != 0 or not bool(torch.isfinite(value)):
            raise _fail(model, f"loss term {name!r} must be a finite scalar tensor, got {value!r}")
    terms["total"].backward()
    without = [n for n, p in _trainable(model) if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    bad = [n for n, p in _trainable(model) if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    if bad:
        raise _fail(model, f"non-finite gradients for {bad}")
    if not cls.has_unused_parameters:
        if without:
            raise _fail(model, f"no gradient reaches {without} (declare has_unused_parameters only if they are unused)")
        return
    if not without:
        raise _fail(model, "has_unused_parameters is set but every parameter gets a gradient (the flag costs DDP time)")
    model.eval()
    before = _interface_outputs(model, hr, lr)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in without:
            params[name].add_(1.0)
    after = _interface_outputs(model, hr, lr)
    if not all(torch.equal(a, b) for a, b in zip(before, after)):
        raise _fail(model, f"parameters {without} get no gradient from training_losses but change the outputs")


def check_save_load(cls: type[FlowSRModel], preset: str) -> None:
    """:func:`flowsr.models.save` then :func:`flowsr.models.load`: same model, same outputs."""
    model = tiny_model(cls, preset)
    hr, lr = family_images(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = save(model, Path(tmp) / "model.safetensors")
        loaded = load(path)
        info = model_info(path)
    if type(loaded) is not cls or loaded.config() != model.config():
        raise _fail(model, f"load gives {type(loaded).__name__} with config {loaded.config()}")
    if info != {"family": cls.family, "task": cls.task, "scale": model.scale}:
        raise _fail(model, f"model_info gives {info}")
    state, loaded_state = model.state_dict(), loaded.state_dict()
    if list(state) != list(loaded_state) or not all(torch.equal(state[k], loaded_state[k]) for k in state):
        raise _fail(model, "the loaded state dict differs from the saved one")
    if not all(
        torch.equal(a, b) for a, b in zip(_interface_outputs(model, hr, lr), _interface_outputs(loaded, hr, lr))
    ):
        raise _fail(model, "the loaded model's outputs differ from the saved model's")


def check_config(cls: type[FlowSRModel], preset: str) -> None:
    """``config()`` is JSON; ``from_config`` rebuilds the architecture (same weights load strictly,
    same outputs)."""
    model = tiny_model(cls, preset)
    text = json.dumps(model.config(), sort_keys=True)
    rebuilt = cls.from_config(json.loads(text))
    if json.dumps(rebuilt.config(), sort_keys=True) != text:
        raise _fail(model, f"from_config(config()).config() differs: {rebuilt.config()} vs {model.config()}")
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    hr, lr = family_images(model)
    if not all(
        torch.equal(a, b) for a, b in zip(_interface_outputs(model, hr, lr), _interface_outputs(rebuilt.eval(), hr, lr))
    ):
        raise _fail(model, "the model rebuilt from its config gives other outputs with the same weights")


def _expect_value_error(model: FlowSRModel, what: str, call: Callable[[], Any]) -> None:
    # the model's class or a family class it derives from (messages written in a base class name it)
    names = [c.__name__ for c in type(model).__mro__ if issubclass(c, FlowSRModel) and c is not FlowSRModel]
    try:
        call()
    except ValueError as e:
        if not re.match("|".join(map(re.escape, names)), str(e)):
            raise _fail(model, f"{what}: the ValueError must name the model: {e}") from e
        return
    except Exception as e:
        raise _fail(model, f"{what}: raised {type(e).__name__} instead of ValueError: {e}") from e
    raise _fail(model, f"{what}: no ValueError")


def _with_nan(t: Tensor) -> Tensor:
    bad = t.clone()
    bad[0, 0, 0, 0] = math.nan
    return bad


def check_bad_input(cls: type[FlowSRModel], preset: str) -> None:
    """``ValueError("<Model>: ...")`` for every kind of bad input to the interface."""
    model = tiny_model(cls, preset)
    hr, lr = family_images(model)
    lr_out, zs, _ = model.encode(hr, lr)
    expect = functools.partial(_expect_value_error, model)
    wider_hr, wider_lr = torch.cat([hr, hr[:, :1]], 1), torch.cat([lr, lr[:, :1]], 1)
    expect("encode: wrong channel count", lambda: model.encode(wider_hr, wider_lr))
    expect("encode: HR size not divisible", lambda: model.encode(hr[..., :-1], lr))
    expect("encode: NaN in the HR image", lambda: model.encode(_with_nan(hr), lr))
    expect("encode: float64 HR for a float32 model", lambda: model.encode(hr.double(), lr.double()))
    expect("encode: integer HR image", lambda: model.encode((hr * 255).long(), lr))
    for name, bad in (("wrong channel count", wider_lr), ("NaN", _with_nan(lr)), ("float64", lr.double())):
        expect(f"sample: {name} in the LR image", lambda bad=bad: model.sample(bad))
        expect(f"upscale: {name} in the LR image", lambda bad=bad: model.upscale(bad))
    expect("sample: an empty LR image", lambda: model.sample(lr[:, :, :0, :0]))
    if model.lr_multiple > 1:
        odd = lr[..., :-1]
        expect("sample: LR size not a multiple of lr_multiple", lambda: model.sample(odd))
    expect("decode: NaN in the LR image", lambda: model.decode(_with_nan(lr_out), zs))
    bad_latents = {
        "None": None,
        "one latent too few": zs[:-1],
        "one latent too many": [*zs, zs[-1]],
        "a bare tensor": zs[0],
        "a latent of the wrong shape": [zs[0][..., :-1], *zs[1:]],
        "NaN in a latent": [_with_nan(zs[0]), *zs[1:]],
        "float64 latents": [z.double() for z in zs],
    }
    for name, bad in bad_latents.items():
        expect(f"decode: {name}", lambda bad=bad: model.decode(lr_out, bad))
        if bad is not None:  # upscale(zs=None) samples the latents
            expect(f"upscale: {name}", lambda bad=bad: model.upscale(lr_out, zs=bad))
    for t in (-1.0, math.nan, math.inf, "0.8", True):
        expect(f"sample: temperature {t!r}", lambda t=t: model.sample(lr, temperature=t))
        expect(f"upscale: temperature {t!r}", lambda t=t: model.upscale(lr, temperature=t))
    for g in (42, "seed", torch.Generator().manual_seed(0).get_state()):
        expect(f"sample: generator {type(g).__name__}", lambda g=g: model.sample(lr, generator=g))
    for n in (2.5, 0, -1, True, "2"):
        expect(f"sample: n={n!r}", lambda n=n: model.sample(lr, n=n))
    noise = GeneratorNoise(BATCH, _generator(0))
    losses = {name: 1.0 for name in cls.objective_weights}
    expect("training_losses: LR of the wrong size", lambda: model.training_losses(hr, lr[..., :-1], noise, losses))


def check_registry(cls: type[FlowSRModel], preset: str) -> None:
    """Registered under its name, a task, presets with specs, the interface's attributes."""
    if get_family(cls.family) is not cls:
        raise AssertionError(f"{cls.__name__}: get_family({cls.family!r}) is {get_family(cls.family).__name__}")
    if cls.task not in TASKS or not cls.presets:
        raise AssertionError(f"{cls.__name__}: task {cls.task!r} must be one of {TASKS}, presets non-empty")
    for name in cls.presets:
        cls.preset_spec(name)
    model = tiny_model(cls, preset)
    for attr in ("scale", "in_channels", "lr_multiple"):
        value = getattr(model, attr)
        if not isinstance(value, int) or value < 1:
            raise _fail(model, f"{attr} must be an int >= 1, got {value!r}")
    if not (isinstance(cls.default_temperature, float | int) and cls.default_temperature >= 0):
        raise _fail(model, f"default_temperature must be a number >= 0, got {cls.default_temperature!r}")
    if model.task == "sr":
        hr, lr = family_images(model)
        out = model.nll(hr, lr)
        if tuple(out.nll.shape) != (BATCH,) or not bool(torch.isfinite(out.nll).all()):
            raise _fail(model, f"nll(hr, lr).nll must be a finite ({BATCH},) tensor")


FamilyCheck = Callable[[type[FlowSRModel], str], None]

#: the model-family contract, by name: ``check(family_class, preset)``.
FAMILY_CHECKS: dict[str, FamilyCheck] = {
    "registry": check_registry,
    "round_trip": check_round_trip,
    "latents": check_latents,
    "sample": check_sample,
    "upscale_downscale": check_upscale_downscale,
    "training": check_training,
    "save_load": check_save_load,
    "config": check_config,
    "bad_input": check_bad_input,
}


def check_family(
    family: str | type[FlowSRModel], *, presets: Sequence[str] | None = None, checks: Sequence[str] | None = None
) -> list[str]:
    """Run the model-family contract on a registered family (a name or the class): every check of
    :data:`FAMILY_CHECKS` (or ``checks``) on a tiny model of each of ``presets`` (default: the
    first preset). Returns the names of the checks that ran."""
    cls = get_family(family) if isinstance(family, str) else family
    if cls.family not in FAMILIES:
        raise ValueError(f"check_family: {cls.__name__} is not registered (decorate it with register_family)")
    names = list(FAMILY_CHECKS) if checks is None else list(checks)
    for preset in presets or cls.presets[:1]:
        for name in names:
            FAMILY_CHECKS[name](cls, preset)
    return names
