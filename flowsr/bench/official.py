"""The official implementations, run from a checkout: detection, imports, networks, calls.

Nothing of the official code is copied into flowsr: a checkout is found on disk
(:func:`detect_repo`, by its files), its own classes are imported with the checkout's code
folder on ``sys.path`` (:func:`official_imports`), and its networks are built from the official
options that :mod:`flowsr.convert` holds for each converter (``OFFICIAL_OPTIONS``).

Importing needs import-time stand-ins for what inference does not use (``torchvision``,
``cv2``, ``natsort``, ``lpips``, ... as stub modules; ``numpy.long`` and
``scipy.interpolate.interp2d`` as attributes, where missing): any missing module or name is
stubbed on the fly and named in :attr:`OfficialCode.stubs`. Nothing is written into the
checkout (``sys.dont_write_bytecode`` while importing), and ``sys.path``, ``sys.modules`` and
the patched attributes are restored afterwards; the imported classes keep working.

:class:`OfficialRepo` describes the calling convention of each repository: how to run its
network's forward ("encode") and reverse at a temperature ("decode", latents drawn inside, as
the official test code), what to compare with flowsr, and which latents the reverse drew
(:func:`record_draws` watches ``torch.rand`` / ``torch.normal`` / ``torch.randn`` while the
official code runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "OFFICIAL_PRESETS",
    "REPOS",
    "Checkout",
    "OfficialCode",
    "OfficialPreset",
    "OfficialRepo",
    "detect_repo",
    "none_dict",
    "normal_draws",
    "official_imports",
    "record_draws",
]


@dataclasses.dataclass(frozen=True)
class OfficialPreset:
    """Which official configuration a bench preset is: its repository, its options (a key of
    the converter's ``OFFICIAL_OPTIONS``) and, when the training step is measured, its train
    options file (relative to the code folder)."""

    repo: str
    converter: str
    options: str
    train_yml: str | None = None


#: bench preset -> official configuration.
OFFICIAL_PRESETS: dict[str, OfficialPreset] = {
    "hcflow_sr_x4": OfficialPreset("HCFlow", "hcflow", "SR_DF2K_4X", "options/train/train_SR_DF2K_4X_HCFlow.yml"),
    "hcflow_sr_x8": OfficialPreset("HCFlow", "hcflow", "SR_CelebA_8X"),
    "hcflow_rescaling_x4": OfficialPreset(
        "HCFlow", "hcflow", "Rescaling_DF2K_4X", "options/train/train_Rescaling_DF2K_4X_HCFlow.yml"
    ),
    "srflow_x4": OfficialPreset("SRFlow", "srflow", "DF2K_4X"),
    "irn_x4": OfficialPreset("IRN", "irn", "IRN_x4"),
}


class _NoneDict(dict):
    """The official option dicts: a missing key reads as ``None``."""

    def __missing__(self, key):
        return None


def none_dict(opt: Any) -> Any:
    """``opt`` with every mapping turned into a dict whose missing keys read as ``None`` (the
    official ``dict_to_nonedict``)."""
    if isinstance(opt, Mapping):
        return _NoneDict({k: none_dict(v) for k, v in opt.items()})
    if isinstance(opt, list):
        return [none_dict(v) for v in opt]
    return opt


# -- checkouts and imports --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Checkout:
    """A checkout of an official repository: which one (``repo``) and its code folder."""

    repo: str
    root: Path
    code: Path


def detect_repo(path: str | Path, repos: Mapping[str, OfficialRepo] | None = None) -> Checkout:
    """Which official repository ``path`` is (the checkout or its code folder), by its files."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--official {path}: not a folder")
    for name, repo in (repos or REPOS).items():
        for code in (path / repo.code_dir, path):
            if (code / repo.marker).is_file():
                return Checkout(name, path, code)
    known = ", ".join(f"{n} ({r.code_dir}/{r.marker})" for n, r in (repos or REPOS).items())
    raise ValueError(f"--official {path}: not a checkout of an official repository flowsr knows ({known})")


class _Stub(types.ModuleType):
    """A stand-in module: every attribute is a placeholder that fails loudly when used."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__path__: list[str] = []  # a package: its submodules are stubbed too

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(f"{self.__name__}.{attr}")


def _placeholder(name: str) -> type:
    def fail(*args, **kwargs):
        raise RuntimeError(f"{name} is an import-time stand-in (flowsr.bench.official): the official code used it")

    return type(name.rpartition(".")[2], (), {"__init__": fail, "__call__": fail, "__module__": "stub"})


_MISSING_NAME = re.compile(r"cannot import name '([^']+)' from '([^']+)'")


@dataclasses.dataclass
class OfficialCode:
    """What :func:`official_imports` yields: ``load(module)`` imports a module of the checkout and
    ``run(fn, ...)`` calls official code, stubbing what is missing; ``stubs`` names what was stubbed."""

    code: Path
    stubs: list[str] = dataclasses.field(default_factory=list)
    _patched: list[tuple[Any, str, Any]] = dataclasses.field(default_factory=list)

    def load(self, module: str) -> types.ModuleType:
        return self.run(importlib.import_module, module)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, again after stubbing each missing module or name it imports (the
        official code imports some modules lazily, e.g. ``define_G``)."""
        for _ in range(50):
            try:
                return fn(*args)
            except ModuleNotFoundError as err:
                missing = err.name or ""
                if not missing or self._is_own(missing) or missing in sys.modules:
                    raise
                self._stub_module(missing)
            except ImportError as err:
                m = _MISSING_NAME.search(str(err))
                if not m or self._is_own(m.group(2)):
                    raise
                self.patch(sys.modules[m.group(2)], m.group(1), _placeholder(f"{m.group(2)}.{m.group(1)}"))
        raise ImportError(f"{getattr(fn, '__name__', fn)}: too many missing imports")

    def patch(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.name = value`` until the context ends."""
        self._patched.append((obj, name, getattr(obj, name, _ABSENT)))
        setattr(obj, name, value)
        self.stubs.append(f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")

    def _stub_module(self, name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                sys.modules[sub] = _Stub(sub)
                if i > 1:
                    setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[sub])
                self.stubs.append(sub)

    def _is_own(self, module: str) -> bool:
        top = module.split(".")[0]
        return (self.code / top).is_dir() or (self.code / f"{top}.py").is_file()


_ABSENT = object()


@contextlib.contextmanager
def official_imports(code: Path) -> Iterator[OfficialCode]:
    """Import from the official code folder ``code`` (see the module docstring); on exit
    ``sys.path``, ``sys.modules`` and every patched attribute are as before."""
    import numpy

    code = Path(code)
    own = {p.stem for p in code.iterdir() if p.is_dir() or p.suffix == ".py"}
    saved_modules = dict(sys.modules)
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    for name in list(sys.modules):  # another checkout's `models`, `utils`, ...
        if name.split(".")[0] in own:
            del sys.modules[name]
    state = OfficialCode(code)
    sys.dont_write_bytecode = True  # nothing is written into the checkout
    sys.path.insert(0, str(code))
    try:
        if not hasattr(numpy, "long"):
            state.patch(numpy, "long", numpy.int64)
        try:
            import scipy.interpolate

            if not hasattr(scipy.interpolate, "interp2d"):
                state.patch(scipy.interpolate, "interp2d", _placeholder("scipy.interpolate.interp2d"))
        except ImportError:  # pragma: no cover - scipy missing: stubbed on import
            pass
        yield state
    finally:
        for obj, name, old in reversed(state._patched):
            if old is _ABSENT:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
        stubbed = set(state.stubs)
        for name in list(sys.modules):  # the checkout's modules and the stubs; other libraries stay
            if name.split(".")[0] in own or name in stubbed:
                del sys.modules[name]
        sys.modules.update({k: v for k, v in saved_modules.items() if k.split(".")[0] in own or k in stubbed})
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode


@contextlib.contextmanager
def record_draws() -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Record every tensor ``torch.rand`` (``"uniform"``), ``torch.normal`` and ``torch.randn``
    (``"normal"``) return while the block runs, in call order. The draws themselves are the
    official code's: nothing is replaced."""
    draws: list[tuple[str, torch.Tensor]] = []
    originals = {name: getattr(torch, name) for name in ("rand", "normal", "randn")}

    def wrap(name: str, fn: Callable) -> Callable:
        kind = "uniform" if name == "rand" else "normal"

        def recorded(*args, **kwargs):
            out = fn(*args, **kwargs)
            draws.append((kind, out.detach().clone()))
            return out

        return recorded

    for name, fn in originals.items():
        setattr(torch, name, wrap(name, fn))
    try:
        yield draws
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


# -- calling conventions ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OfficialRepo:
    """How to use one official repository's networks.

    ``build(code, opt)`` returns the generator network for the official options ``opt``
    (inside :func:`official_imports`); ``encode(net, hr, lr)`` is the official forward and
    returns ``{name: tensor}`` of what flowsr's counterpart must reproduce; ``decode(net, lr,
    heat)`` is the official reverse with latents drawn inside, returning the HR image;
    ``draws_to_latents(draws)`` turns what the reverse drew into flowsr's latents (deepest level
    first). ``code_dir`` / ``marker`` identify a checkout.
    """

    code_dir: str
    marker: str
    build: Callable[[OfficialCode, Mapping], torch.nn.Module]
    encode: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
    decode: Callable[[torch.nn.Module, torch.Tensor, float], torch.Tensor]
    draws_to_latents: Callable[[list[tuple[str, torch.Tensor]]], list[torch.Tensor]] | None = None
    clamps: bool = False

    def latents(self, draws: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """flowsr's latents (deepest first) from what the official reverse drew."""
        return (self.draws_to_latents or normal_draws)(draws)


def normal_draws(draws: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The ``"normal"`` draws in call order: the official reverses draw the deepest level's
    latent first, as flowsr orders them."""
    return [t for kind, t in draws if kind == "normal"]


def _mark_initialised(net: torch.nn.Module) -> torch.nn.Module:
    """ActNorms count as initialised (their ``inited`` flag), as after the first training batch."""
    for m in net.modules():
        flag = getattr(m, "inited", None)
        if isinstance(flag, torch.Tensor):
            flag.fill_(True)
        elif isinstance(flag, bool):
            m.inited = True
    return net.eval()


def _hcflow_build(code: OfficialCode, opt: Mapping) -> torch.nn.Module:
    networks = code.load("models.networks")
    return _mark_initialised(code.run(networks.define_G, none_dict(opt), None))


def _hcflow_encode(net, hr, lr) -> dict[str, torch.Tensor]:
    out = net(hr=hr, lr=lr, reverse=False, training=False)
    if len(out) == 2:  # SR: (clamped LR, batch-mean NLL)
        return {"lr": out[0], "nll": out[1]}
    return {"lr": out[0], **{f"z{i}": z for i, z in enumerate(out[1:], 1)}}  # rescaling: (LR, z1, z2)


def _hcflow_decode(net, lr, heat: float) -> torch.Tensor:
    return net(lr=lr, eps_std=heat, reverse=True, training=False)


def _srflow_build(code: OfficialCode, opt: Mapping) -> torch.nn.Module:
    networks = code.load("models.networks")
    return _mark_initialised(code.run(networks.define_Flow, none_dict(opt), None))


def _srflow_encode(net, hr, lr) -> dict[str, torch.Tensor]:
    # the official training forward: no dequantisation noise (add_gt_noise=False)
    epses, nll, _ = net(gt=hr, lr=lr, reverse=False, epses=[])
    return {"nll": nll, **{f"z{i}": z for i, z in enumerate(reversed(epses))}}


def _srflow_decode(net, lr, heat: float) -> torch.Tensor:
    # as SRFlowModel.get_sr: the deepest latent at the temperature, the splits draw the rest
    up = net.flowUpsamplerNet
    scale = net.opt["scale"]
    shape = (lr.shape[0], up.C, int(scale * lr.shape[2] // up.scaleH), int(scale * lr.shape[3] // up.scaleW))
    z = torch.normal(mean=0, std=heat, size=shape) if heat > 0 else torch.zeros(shape)
    return net(lr=lr, z=z, eps_std=heat, reverse=True)[0]


def _irn_build(code: OfficialCode, opt: Mapping) -> torch.nn.Module:
    networks = code.load("models.networks")
    return code.run(networks.define_G, none_dict(opt)).eval()


def _irn_encode(net, hr, lr) -> dict[str, torch.Tensor]:
    out = net(x=hr)
    return {"lr": out[:, :3], "z": out[:, 3:]}


def _irn_decode(net, lr, heat: float) -> torch.Tensor:
    # as IRNModel.upscale: [LR, heat * N(0, I)] through the reverse, the first 3 channels
    scale = 2 ** sum(type(m).__name__ == "HaarDownsampling" for m in net.modules())
    zshape = (lr.shape[0], lr.shape[1] * (scale**2 - 1), lr.shape[2], lr.shape[3])
    return net(x=torch.cat((lr, heat * torch.randn(zshape)), dim=1), rev=True)[:, :3]


#: repository name -> how to use it.
REPOS: dict[str, OfficialRepo] = {
    "HCFlow": OfficialRepo(
        "codes", "models/modules/HCFlowNet_SR_arch.py", _hcflow_build, _hcflow_encode, _hcflow_decode, clamps=True
    ),
    "SRFlow": OfficialRepo("code", "models/modules/SRFlowNet_arch.py", _srflow_build, _srflow_encode, _srflow_decode),
    "IRN": OfficialRepo("codes", "models/modules/Inv_arch.py", _irn_build, _irn_encode, _irn_decode),
}
