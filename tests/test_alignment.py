"""Alignment building blocks: gradient reversal, MMD, CORAL (each fails if it were a no-op)."""

import torch

from speechtl.adapt.alignment import coral, dann_lambda, grad_reverse, mmd_rbf


def test_reversal_layer_negates_and_scales_gradients():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    (grad_reverse(x, 0.3) * w).sum().backward()
    assert torch.equal(grad_reverse(x, 0.3), x)
    torch.testing.assert_close(x.grad, -0.3 * w)


def test_dann_schedule_rises_from_0_to_1():
    assert dann_lambda(0.0) == 0.0
    assert 0.99 < dann_lambda(1.0) <= 1.0
    assert dann_lambda(0.2) < dann_lambda(0.5)


def test_mmd_and_coral_near_zero_for_identical_samples_and_positive_for_shifted():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    assert abs(float(mmd_rbf(x, x.clone()))) < 1e-6
    assert float(coral(x, x.clone())) < 1e-9
    y = torch.randn(200, 8, generator=g) * 2 + 1.5
    assert float(mmd_rbf(x, y)) > 0.1
    assert float(coral(x, y)) > 1e-3


def test_mmd_and_coral_fall_when_trained_on_shifted_data():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(128, 6, generator=g)
    tgt = torch.randn(128, 6, generator=g) * 3 + 2
    for loss_fn in (mmd_rbf, coral):
        layer = torch.nn.Linear(6, 6)
        opt = torch.optim.Adam(layer.parameters(), lr=0.05)
        first = None
        for _ in range(60):
            loss = loss_fn(src, layer(tgt))
            first = float(loss) if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(loss) < 0.3 * first, (loss_fn.__name__, first, float(loss))
