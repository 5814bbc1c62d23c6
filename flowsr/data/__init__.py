"""Images in and out, MATLAB-compatible bicubic resizing, and what flowsr ships besides code.

* :func:`read_image` / :func:`write_image`: files <-> ``(3, H, W)`` float32 RGB tensors in [0, 1];
  :func:`to_uint8` / :func:`from_uint8` for the 8-bit quantisation used by the metrics.
* :func:`load_image` / :func:`save_image`: image-to-image tools: the output is the same kind of
  file as the input (alpha, grey, 16 bit, EXIF orientation, colour profile), each conversion
  reported once as a :class:`Note` (:mod:`flowsr.data.image_io`).
* :data:`IMAGE_EXTENSIONS`, :func:`is_image_file`, :func:`list_images`: the one list of image
  extensions, for files and folders alike.
* :func:`get_max_pixels` / :func:`set_max_pixels` (env ``FLOWSR_MAX_PIXELS``): the pixel limit every
  reader checks before decoding.
* :func:`imresize`: MATLAB ``imresize(..., 'bicubic')`` (antialiased, symmetric border), the way
  the benchmark LR images are made; ``uint8`` in -> ``uint8`` out like MATLAB, floats in -> floats out.
* :func:`sample_images`, :func:`sample_pairs`, :func:`redistributable_pairs`: the example HR/LR pairs
  installed with the package, with their licences; :func:`bundled_models`, :func:`resolve_model`:
  the bundled models and their cards (:mod:`flowsr.data.catalog`).
* :func:`recipe_path`, :func:`list_recipes`: the training recipes by name (:mod:`flowsr.data.recipes`).
"""

from __future__ import annotations

from flowsr.data.catalog import (
    MODELS_DIR,
    SAMPLE_KINDS,
    SAMPLE_SETS,
    ModelEntry,
    SampleImage,
    SampleSet,
    bundled_models,
    model_card,
    read_card,
    redistributable_pairs,
    resolve_model,
    sample_images,
    sample_pairs,
)
from flowsr.data.image_io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV,
    WRITE_FORMATS,
    LoadedImage,
    Note,
    from_uint8,
    get_max_pixels,
    is_image_file,
    list_images,
    load_image,
    read_image,
    reset_max_pixels,
    resize_alpha,
    save_image,
    set_max_pixels,
    to_grey,
    to_uint8,
    write_image,
)
from flowsr.data.recipes import list_recipes, recipe_path, recipes_dir, resolve_recipe_data
from flowsr.data.resize import imresize, resize_weights

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "MODELS_DIR",
    "SAMPLE_KINDS",
    "SAMPLE_SETS",
    "WRITE_FORMATS",
    "LoadedImage",
    "ModelEntry",
    "Note",
    "SampleImage",
    "SampleSet",
    "bundled_models",
    "from_uint8",
    "get_max_pixels",
    "imresize",
    "is_image_file",
    "list_images",
    "list_recipes",
    "load_image",
    "model_card",
    "read_card",
    "read_image",
    "recipe_path",
    "recipes_dir",
    "redistributable_pairs",
    "reset_max_pixels",
    "resize_alpha",
    "resize_weights",
    "resolve_model",
    "resolve_recipe_data",
    "sample_images",
    "sample_pairs",
    "save_image",
    "set_max_pixels",
    "to_grey",
    "to_uint8",
    "write_image",
]
