"""What gradient rules save (Tensor._frozen) is protected from in-place updates until the rule has built its
gradient, and no longer after (inplace.release): the optimizer step right after backward neither stores a
saved intermediate nor copies a parameter the rule read (a kernel and a copy per step before)."""
import numpy as np
import torch

from tinyjit import Tensor, autograd, inplace, nn, no_grad, optim


def _model_pair(seed=0):
    rng = np.random.default_rng(seed)
    conv_w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    lin_w = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32) * 0.1
    lin_b = rng.standard_normal(5).astype(np.float32) * 0.1
    return conv_w, lin_w, lin_b


def test_training_steps_through_rules_match_torch_and_copy_nothing():
    """conv2d, gelu (erf), pow, var and binary_cross_entropy all have gradient rules reading saved tensors; three
    SGD steps match torch, and no parameter's old contents are copied for a rule."""
    conv_w, lin_w, lin_b = _model_pair()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    target = np.random.default_rng(2).uniform(0.1, 0.9, (2, 5)).astype(np.float32)

    def forward(lib, cw, lw, lb, xx, tt):
        if lib is torch:
            h = torch.nn.functional.gelu(torch.nn.functional.conv2d(xx, cw)).reshape(2, -1)
            p = torch.sigmoid(h @ lw.T + lb)
            return torch.nn.functional.binary_cross_entropy(p, tt) + (lw ** 3).sum() * 0.01 + h.var() * 0.1
        h = xx.conv2d(cw).gelu().reshape(2, -1)
        p = (h @ lw.T + lb).sigmoid()
        return p.binary_cross_entropy(tt) + (lw ** 3).sum() * 0.01 + h.var() * 0.1

    params = [Tensor(v, requires_grad=True) for v in (conv_w, lin_w, lin_b)]
    opt = optim.SGD(params, lr=0.1)
    tparams = [torch.tensor(v, requires_grad=True) for v in (conv_w, lin_w, lin_b)]
    topt = torch.optim.SGD(tparams, lr=0.1)
    preserved = inplace.stats["buffers_preserved"]
    for _ in range(3):
        opt.zero_grad()
        loss = forward(None, *params, Tensor(x), Tensor(target))
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = forward(torch, *tparams, torch.from_numpy(x), torch.from_numpy(target))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert inplace.stats["buffers_preserved"] == preserved


def test_gelu_input_is_not_stored_for_the_step(scheduled_kernel_counts):
    """Linear -> gelu -> Linear, backward and an SGD step in one schedule: erf's saved input (x W^T + b) / sqrt 2
    fuses into its readers instead of being stored before the bias update (14 kernels before, 13 now)."""
    rng = np.random.default_rng(0)
    lin, lin2 = nn.Linear(16, 32), nn.Linear(32, 4)
    opt = optim.SGD(list(lin.parameters()) + list(lin2.parameters()), lr=0.1)
    x = Tensor(rng.random((8, 16), dtype=np.float32))
    counts = scheduled_kernel_counts
    for _ in range(2):
        opt.zero_grad()
        loss = lin2(lin(x).gelu()).square().mean()
        loss.backward()
        opt.step()
    assert counts == [13, 13]


def test_saved_values_are_kept_until_the_rule_has_run():
    """An in-place update between the forward and backward (realized in between) does not change what the rule
    reads: pow's base, erf's input and a conv's weight keep their values from the forward."""
    rng = np.random.default_rng(4)
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    x = Tensor(xv, requires_grad=True)
    y = (x * 1).realize()
    cubed, erf = y ** 3, y.erf()
    y.add_(1).realize()                    # y's buffer now holds xv + 1
    (cubed.sum() + erf.sum()).backward()
    want = 3 * xv ** 2 + 2 / np.sqrt(np.pi) * np.exp(-xv ** 2)
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-5)

    wv = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    image = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    w, inp = Tensor(wv, requires_grad=True), Tensor(image, requires_grad=True)
    out = inp.conv2d(w)
    with no_grad():
        w.add_(5.0).realize()
    out.sum().backward()
    t_inp = torch.tensor(image, requires_grad=True)
    torch.nn.functional.conv2d(t_inp, torch.tensor(wv)).sum().backward()
    np.testing.assert_allclose(inp.grad.numpy(), t_inp.grad.numpy(), rtol=1e-5, atol=1e-6)



def test_rules_run_again_after_release_give_the_same_gradients():
    """A rule whose saved tensors were released still runs again with them: a second backward with retain_graph
    accumulates the same gradient, and second derivatives through erf, pow and var match torch."""
    xv = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)

    def f(x):
        erf = torch.erf(x) if isinstance(x, torch.Tensor) else x.erf()
        return (erf * x ** 3).sum() + x.var() * 2

    x = Tensor(xv, requires_grad=True)
    loss = f(x)
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-5, atol=1e-6)

    x2 = Tensor(xv, requires_grad=True)
    (g,) = autograd.grad(f(x2), [x2], create_graph=True)
    (g * g).sum().backward()
    tx = torch.tensor(xv, requires_grad=True)
    (tg,) = torch.autograd.grad(f(tx), [tx], create_graph=True)
    (tg * tg).sum().backward()
    np.testing.assert_allclose(first, tg.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x2.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
