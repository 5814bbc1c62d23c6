"""Diverse sampling decodes N latents per LR image in one batch and computes the LR-only features once.

``HierarchicalFlow.decode(y, latents)`` accepts latents with ``n`` times the batch of ``y``: the
deepest level's features (which depend only on ``y``) are computed once per LR image and
expanded. The result must be exactly what decoding every sample on its own gives.
"""

from __future__ import annotations

import pytest
import torch

from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec
from flowsr.testing import default_dtype, perturb_parameters


def _sr_spec(levels: int) -> HierarchySpec:
    fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=4, scale="atan")
    return HierarchySpec(
        levels=levels,
        steps=1,
        coupling=fcn,
        latent=LatentSpec(steps=1, coupling=fcn, prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=4, gc=2, nb=[1, 1], concat=True),
    )


def _rescaling_spec() -> HierarchySpec:
    return HierarchySpec(
        levels=2,
        steps=2,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=3),
        latent=LatentSpec(steps=1, coupling=CouplingSpec(kind="affine", subnet="fcn", hidden=4), prior="atan"),
        features=FeatureSpec(kind="rrdb", nf=4, gc=2, nb=[1, 1], concat=False),
    )


MODELS = {
    "sr_x4": lambda: HCFlowSR(_sr_spec(2)),
    "sr_x8": lambda: HCFlowSR(_sr_spec(3)),
    "rescaling_x4": lambda: HCFlowRescaling(_rescaling_spec()),
}


def _model(name: str):
    model = MODELS[name]()
    perturb_parameters(model, seed=1, scale=0.05)
    return model.eval()


def _per_sample(model, lr: torch.Tensor, zs: list[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every (sample, image) pair on its own, batch 1, in ``lr.repeat(n)`` order."""
    batch = lr.shape[0]
    outs = [model.flow.decode(lr[k % batch : k % batch + 1], [z[k : k + 1] for z in zs]) for k in range(n * batch)]
    return torch.cat([x for x, _ in outs]), torch.cat([j for _, j in outs])


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 2])
def test_batched_diverse_sampling_equals_per_sample_decoding(name: str, batch: int) -> None:
    n = 3
    with default_dtype(torch.float64):
        model = _model(name)
        lr = torch.rand(batch, 3, 4, 6, generator=torch.Generator().manual_seed(2))
        zs = model.sample_latents(lr.repeat(n, 1, 1, 1), 0.8, torch.Generator().manual_seed(3))
        with torch.no_grad():
            shared, logdet = model.flow.decode(lr, zs)
            repeated, logdet_repeated = model.flow.decode(lr.repeat(n, 1, 1, 1), zs)
            single, per_logdet = _per_sample(model, lr, zs, n)
            sampled = model.sample(lr, 0.8, n, torch.Generator().manual_seed(3))
    assert shared.shape == (n * batch, 3, 4 * model.scale, 6 * model.scale)
    assert torch.equal(shared, single)
    assert torch.equal(shared, repeated)
    assert torch.equal(logdet, per_logdet) and torch.equal(logdet, logdet_repeated)
    # the public sampler draws the same latents and decodes them the shared way
    assert sampled.shape == (n, batch, 3, 4 * model.scale, 6 * model.scale)
    assert torch.equal(sampled.reshape(shared.shape), shared.clamp(0, 1))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_shared_decoding_matches_and_computes_the_deepest_features_once(name: str) -> None:
    n, batch = 4, 2
    model = _model(name)
    lr = torch.rand(batch, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    zs = model.sample_latents(lr.repeat(n, 1, 1, 1), 0.7, torch.Generator().manual_seed(6))
    deepest = model.flow.levels[-1].features
    seen: list[int] = []
    handle = deepest.register_forward_hook(lambda mod, args, out: seen.append(out.shape[0]))
    try:
        with torch.no_grad():
            shared, _ = model.flow.decode(lr, zs)
    finally:
        handle.remove()
    assert seen == [batch]  # once per LR image, not once per sample
    with torch.no_grad():
        single, _ = _per_sample(model, lr, zs, n)
    torch.testing.assert_close(shared, single, rtol=1e-5, atol=1e-5)


def test_latent_batch_must_be_a_multiple_of_the_lr_batch() -> None:
    model = _model("sr_x4")
    lr = torch.rand(2, 3, 4, 4)
    zs = model.sample_latents(torch.rand(3, 3, 4, 4), 0.8)
    with pytest.raises(ValueError, match="multiple"), torch.no_grad():
        model.flow.decode(lr, zs)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_chunked_decoding_equals_decoding_all_samples_at_once(name: str, chunk: int) -> None:
    # chunks of the samples after the shared part: every row is computed on its own, so the
    # result (and the log-det) must not depend on the chunk size, bit for bit
    n, batch = 4, 2
    with default_dtype(torch.float64):
        model = _model(name)
        lr = torch.rand(batch, 3, 4, 4, generator=torch.Generator().manual_seed(7))
        zs = model.sample_latents(lr.repeat(n, 1, 1, 1), 0.8, torch.Generator().manual_seed(8))
        deepest = model.flow.levels[-1].features
        seen: list[int] = []
        handle = deepest.register_forward_hook(lambda mod, args, out: seen.append(out.shape[0]))
        try:
            with torch.no_grad():
                chunked, logdet_chunked = model.flow.decode(lr, zs, chunk=chunk)
        finally:
            handle.remove()
        with torch.no_grad():
            whole, logdet = model.flow.decode(lr, zs)
            single, per_logdet = _per_sample(model, lr, zs, n)
    assert seen == [batch]  # the shared part runs once, not once per chunk
    assert torch.equal(chunked, whole) and torch.equal(chunked, single)
    assert torch.equal(logdet_chunked, logdet) and torch.equal(logdet_chunked, per_logdet)


def test_float32_eight_samples_match_eight_single_sample_decodes() -> None:
    # the target case in float32: 8 samples of one LR equal 8 separate decodes to 1e-5
    model = _model("sr_x4")
    lr = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        sampled = model.sample(lr, 0.9, 8, torch.Generator().manual_seed(10))
        zs = model.sample_latents(lr.repeat(8, 1, 1, 1), 0.9, torch.Generator().manual_seed(10))
        single, _ = _per_sample(model, lr, zs, 8)
    torch.testing.assert_close(sampled.reshape(single.shape), single.clamp(0, 1), rtol=0, atol=1e-5)
