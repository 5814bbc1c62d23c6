"""What flowsr ships besides code: the sample images (with their licences) and the bundled models
(with their cards). Nothing here downloads anything.

Sample images (``flowsr/data/samples/<set>/{HR,LR}``; provenance: ``samples/README.md``):

=============  =====  ==================================================  ===============
set            scale  images and licence                                  redistributable
=============  =====  ==================================================  ===============
``open_x4``    4      five 256 px crops of scikit-image sample images:    yes
                      CC0 / public domain / no known copyright
                      restrictions (per image: :data:`SAMPLE_SETS`)
``general_x4`` 4      the Set5 butterfly: licence **unknown**             no
``face_x8``    8      six CelebA-HQ faces: **non-commercial research      no
                      use only**
=============  =====  ==================================================  ===============

:func:`redistributable_pairs` gives the images a demo may show and whose outputs may be shared
(today: ``open_x4``); :func:`sample_pairs` lists any selection with each image's licence.

Bundled models (``flowsr/data/models/<name>.safetensors`` + card ``<name>.md`` with YAML front
matter): :func:`bundled_models`, :func:`model_card`, :func:`resolve_model`. A model is named by
a bundled name (``"hcflow_sr_x4_demo"``), a ``.safetensors`` file, or a folder holding
``model.safetensors`` (or exactly one ``.safetensors``) with its card ``README.md`` or
``<name>.md`` (the layout model hubs use). :func:`flowsr.models.load` accepts all three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = [
    "MODELS_DIR",
    "SAMPLE_KINDS",
    "SAMPLE_SETS",
    "ModelEntry",
    "SampleImage",
    "SampleSet",
    "bundled_models",
    "format_front_matter",
    "model_card",
    "read_card",
    "redistributable_pairs",
    "resolve_model",
    "sample_images",
    "sample_pairs",
    "samples_dir",
]


# ------------------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class SampleSet:
    """One bundled set of HR/LR pairs: its scale, where it comes from and under which licence.

    ``licences`` maps image names to their licence where they differ from ``licence``;
    ``redistributable``: images (and results computed from them) may be shown and shared, commercial
    use included.
    """

    name: str
    scale: int
    description: str
    source: str
    licence: str
    redistributable: bool
    licences: dict[str, str] = field(default_factory=dict)


SAMPLE_SETS: dict[str, SampleSet] = {
    s.name: s
    for s in (
        SampleSet(
            name="open_x4",
            scale=4,
            description="five crops of scikit-image 0.26.0 sample images (grey): camera, coins, brick, grass, text",
            source="scikit-image 0.26.0 wheel, skimage/data (crop boxes and checksums: samples/README.md)",
            licence="CC0 1.0",
            redistributable=True,
            licences={
                "camera": "CC0 1.0 (photographer Lav Varshney)",
                "brick": "CC0 1.0 (CC0Textures, Bricks25)",
                "grass": "CC0 1.0 (linolafett, Grass-01)",
                "coins": "no known copyright restrictions (Brooklyn Museum collection)",
                "text": "public domain (Wikipedia, File:Corner.png)",
            },
        ),
        SampleSet(
            name="general_x4",
            scale=4,
            description="the Set5 butterfly (SR benchmark image) and its MATLAB-bicubic x4 LR",
            source="example images of the official HCFlow repository (JingyunLiang/HCFlow, 10deed6)",
            licence="unknown: Set5's authors state no licence for the image",
            redistributable=False,
        ),
        SampleSet(
            name="face_x8",
            scale=8,
            description="six 160 px CelebA-HQ test faces and their MATLAB-bicubic x8 LR",
            source="example images of the official HCFlow repository (JingyunLiang/HCFlow, 10deed6)",
            licence="CelebA / CelebA-HQ: non-commercial research purposes only",
            redistributable=False,
        ),
    )
}

#: The sets ``flowsr demo``, ``flowsr test --data NAME`` and ``data.samples`` of the training configs
#: used so far, with their scale. ``open_x4`` is listed only in :data:`SAMPLE_SETS` until the demo
#: switches to :func:`redistributable_pairs` (adding it here would change the demo's numbers).
SAMPLE_KINDS: dict[str, int] = {"face_x8": 8, "general_x4": 4}


@dataclass(frozen=True)
class SampleImage:
    """One bundled HR/LR pair with its licence (:func:`sample_pairs`)."""

    name: str
    kind: str
    scale: int
    hr: Path
    lr: Path
    licence: str
    redistributable: bool


def samples_dir() -> Path:
    """The installed ``flowsr/data/samples`` folder."""
    return Path(str(files("flowsr.data").joinpath("samples")))


def sample_images(kind: str) -> list[tuple[str, Path, Path]]:
    """The bundled example pairs of one set: ``[(name, hr_path, lr_path), ...]`` sorted by name.

    ``kind`` is a key of :data:`SAMPLE_SETS` (``"open_x4"``, ``"general_x4"``, ``"face_x8"``). Names are
    file stems (``"16"``, ``"butterfly"``). The paths are real files of the installed package. Each
    set's licence: :data:`SAMPLE_SETS` / :func:`sample_pairs`.
    """
    if kind not in SAMPLE_SETS:
        raise ValueError(f"sample_images: unknown kind {kind!r}; expected one of {sorted(SAMPLE_SETS)}")
    root = samples_dir() / kind
    hr_dir, lr_dir = root / "HR", root / "LR"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise FileNotFoundError(
            f"sample_images: {hr_dir} or {lr_dir} is missing; the package data was not installed "
            "(a zipped install is not supported: install flowsr unpacked, as pip does)"
        )
    pairs = []
    for hr in sorted(hr_dir.glob("*.png"), key=lambda p: p.name):
        lr = lr_dir / hr.name
        if not lr.is_file():
            raise FileNotFoundError(f"sample_images: no LR image {lr} for {hr}")
        pairs.append((hr.stem, hr, lr))
    return pairs


def sample_pairs(
    sets: str | list[str] | None = None, *, redistributable: bool | None = None, scale: int | None = None
) -> list[SampleImage]:
    """Bundled pairs with their licences, set by set in :data:`SAMPLE_SETS` order, then by name.

    ``sets``: one set name or a list (default: all); ``redistributable``: only pairs that may (True)
    or may not (False) be redistributed; ``scale``: only sets of that scale.
    """
    names = list(SAMPLE_SETS) if sets is None else [sets] if isinstance(sets, str) else list(sets)
    out = []
    for set_name in names:
        if set_name not in SAMPLE_SETS:
            raise ValueError(f"sample_pairs: unknown set {set_name!r}; expected one of {sorted(SAMPLE_SETS)}")
        s = SAMPLE_SETS[set_name]
        if (redistributable is not None and s.redistributable != redistributable) or (
            scale is not None and s.scale != scale
        ):
            continue
        for name, hr, lr in sample_images(set_name):
            out.append(SampleImage(name, set_name, s.scale, hr, lr, s.licences.get(name, s.licence), s.redistributable))
    return out


def redistributable_pairs(scale: int | None = None) -> list[SampleImage]:
    """The bundled pairs a demo may show and whose results may be shared (CC0 / public domain)."""
    return sample_pairs(redistributable=True, scale=scale)


# ------------------------------------------------------------------------------------------- models

#: The folder of the bundled models and their cards.
MODELS_DIR = Path(str(files("flowsr.data").joinpath("models")))


def read_card(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """A model card: ``(front_matter, body)``. The YAML front matter is the block between a first line
    ``---`` and the next ``---`` line (the model-hub convention); ``{}`` when there is none.

    Raises ``ValueError`` naming the file when the front matter is not valid YAML mapping.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                meta = yaml.safe_load("".join(lines[1:i])) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"{path}: the card's front matter is not valid YAML: {err}") from None
            if not isinstance(meta, dict):
                raise ValueError(f"{path}: the card's front matter is not a mapping")
            return meta, "".join(lines[i + 1 :])
    raise ValueError(f"{path}: the card's front matter has no closing '---' line")


def format_front_matter(meta: dict[str, Any]) -> str:
    """``meta`` as a card's YAML front matter block (``---`` lines included), keys in the given order.

    For card writers (``recipes/ship_demo_model.py``): ``card = format_front_matter(meta) + body``.
    """
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100) + "---\n"


@dataclass(frozen=True)
class ModelEntry:
    """A model file with its card: ``name``, ``path`` (the ``.safetensors``), ``card`` (or None),
    ``metadata`` (the card's front matter, ``{}`` without one), ``title`` (the card's first heading),
    ``bundled`` (shipped with flowsr)."""

    name: str
    path: Path
    card: Path | None
    metadata: dict[str, Any]
    title: str
    bundled: bool = False


def _title(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


def _entry(name: str, weights: Path, card: Path | None, bundled: bool) -> ModelEntry:
    meta, body = read_card(card) if card is not None else ({}, "")
    return ModelEntry(name, weights, card, meta, _title(body), bundled)


def bundled_models() -> list[ModelEntry]:
    """The models shipped in ``flowsr/data/models``, sorted by name, each with its card's metadata
    (for ``flowsr info --list`` and ``--help``)."""
    if not MODELS_DIR.is_dir():
        return []
    out = []
    for weights in sorted(MODELS_DIR.glob("*.safetensors")):
        card = weights.with_suffix(".md")
        out.append(_entry(weights.stem, weights, card if card.is_file() else None, True))
    return out


def _folder_entry(folder: Path) -> ModelEntry:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        found = sorted(folder.glob("*.safetensors"))
        if len(found) != 1:
            what = "no .safetensors file" if not found else f"{len(found)} .safetensors files and no model.safetensors"
            raise FileNotFoundError(f"model folder {folder} holds {what}")
        weights = found[0]
    card = next(
        (c for c in (folder / "README.md", weights.with_suffix(".md"), folder / f"{folder.name}.md") if c.is_file()),
        None,
    )
    return _entry(folder.name if weights.name == "model.safetensors" else weights.stem, weights, card, False)


def resolve_model(name_or_path: str | os.PathLike) -> ModelEntry:
    """Find a model: an existing ``.safetensors`` file (card: ``<stem>.md`` beside it, if any), a
    folder holding ``model.safetensors`` (or exactly one ``.safetensors``) and its card (``README.md``
    or ``<name>.md``), or the name of a bundled model. Paths win over bundled names.

    Raises ``FileNotFoundError`` saying what was looked for and listing the bundled names.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return _folder_entry(path)
    if path.exists():
        card = path.with_suffix(".md")
        return _entry(path.stem, path, card if card.is_file() else None, False)
    text = os.fspath(name_or_path)
    bundled = {m.name: m for m in bundled_models()}
    key = text[: -len(".safetensors")] if text.endswith(".safetensors") else text
    if os.sep not in text and "/" not in text and key in bundled:
        return bundled[key]
    names = ", ".join(bundled) or "none"
    raise FileNotFoundError(
        f"model not found: {text!r} is neither a file or folder nor the name of a bundled model (bundled: {names})"
    )


def model_card(name_or_path: str | os.PathLike) -> ModelEntry:
    """The card of a model, resolved as :func:`resolve_model` (an alias kept for readability)."""
    return resolve_model(name_or_path)
