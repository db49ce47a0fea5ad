"""Fit a polynomial with a single Linear layer and a hand-written gradient step, in the style of pytorch/examples'
regression/main.py, written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
It uses what the example uses: module-level torch.randn targets, polynomial features made with unsqueeze and
torch.cat of powers, x.mm(W) + b.item(), smooth_l1_loss, the manual SGD step param.data.add_(-lr * param.grad)
with gradients cleared through .grad.data.zero_(), and '{:+.2f}'.format of the learned weights' elements.
"""
import argparse
from itertools import count

import torch
import torch.nn.functional as F

POLY_DEGREE = 4
W_target = torch.randn(POLY_DEGREE, 1) * 5
b_target = torch.randn(1) * 5


def make_features(x):
    """Builds features i.e. a matrix with columns [x, x^2, x^3, x^4]."""
    x = x.unsqueeze(1)
    return torch.cat([x ** i for i in range(1, POLY_DEGREE + 1)], 1)


def f(x):
    """Approximated function."""
    return x.mm(W_target) + b_target.item()


def poly_desc(W, b):
    """Creates a string description of a polynomial."""
    result = 'y = '
    for i, w in enumerate(W):
        result += '{:+.2f} x^{} '.format(w, i + 1)
    result += '{:+.2f}'.format(b[0])
    return result


def get_batch(batch_size=32):
    """Builds a batch i.e. (x, f(x)) pair."""
    random = torch.randn(batch_size)
    x = make_features(random)
    y = f(x)
    return x, y


def main(argv=None):
    parser = argparse.ArgumentParser(description='PyTorch polynomial regression example')
    parser.add_argument('--lr', type=float, default=0.1, help='learning rate')
    parser.add_argument('--max-batches', type=int, default=2000, help='stop after this many batches')
    parser.add_argument('--log-interval', type=int, default=100, help='batches between loss reports')
    args = parser.parse_args(argv)

    # Define model
    fc = torch.nn.Linear(W_target.size(0), 1)

    losses = []
    for batch_idx in count(1):
        # Get data
        batch_x, batch_y = get_batch()

        # Reset gradients (there are none before the first backward pass)
        if fc.weight.grad is not None:
            fc.weight.grad.data.zero_()
            fc.bias.grad.data.zero_()

        # Forward pass
        output = F.smooth_l1_loss(fc(batch_x), batch_y)
        loss = output.item()
        losses.append(loss)

        # Backward pass
        output.backward()

        # Apply gradients
        for param in fc.parameters():
            param.data.add_(-args.lr * param.grad)

        if batch_idx % args.log_interval == 0:
            print('Batch {}: loss {:.6f}'.format(batch_idx, loss))

        # Stop criterion
        if loss < 1e-3 or batch_idx >= args.max_batches:
            break

    print('Loss: {:.6f} after {} batches'.format(loss, batch_idx))
    print('==> Learned function:\t' + poly_desc(fc.weight.view(-1), fc.bias))
    print('==> Actual function:\t' + poly_desc(W_target.view(-1), b_target))
    return fc, losses


if __name__ == '__main__':
    main()
