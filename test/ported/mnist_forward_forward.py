"""Hinton's forward-forward training in the style of pytorch/examples' mnist_forward_forward/main.py, written for
PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The digits are synthetic (ten noisy 6x6 templates drawn with numpy, flattened and normalized like MNIST), the
layers narrow and the epochs few, so a run takes seconds. It uses what the example uses: layers that subclass
nn.Linear (passing bias, device, dtype on) with their own Adam and a `train(x_pos, x_neg)` that replaces
Module.train, kept in a plain Python list; labels overlaid on the inputs with an in-place `*=` on a slice and
`x_[range(n), y] = x.max()`; negative labels drawn with torch.randint and written element by element with
`y_neg[idx] = ...item()`; x.norm(2, 1, keepdim=True), torch.mm with weight.T, bias.unsqueeze(0), log1p(exp(cat)),
Python's sum over a list of tensors, argmax, eq, float().mean().
"""
import argparse

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from torch.optim import Adam

SIDE = 6   # image side; inputs have SIDE * SIDE features, the first 10 of which carry the label


def get_y_neg(y):
    """A wrong label for each sample, drawn uniformly from the nine others."""
    y_neg = y.clone()
    for idx, y_samp in enumerate(y):
        allowed_indices = list(range(10))
        allowed_indices.remove(y_samp.item())
        y_neg[idx] = torch.tensor(allowed_indices)[torch.randint(len(allowed_indices), size=(1,))].item()
    return y_neg.to(device)


def overlay_y_on_x(x, y, classes=10):
    """x with its first `classes` features replaced by a one-hot of y scaled to x's maximum."""
    x_ = x.clone()
    x_[:, :classes] *= 0.0
    x_[range(x.shape[0]), y] = x.max()
    return x_


class Net(torch.nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.layers = []
        for d in range(len(dims) - 1):
            self.layers = self.layers + [Layer(dims[d], dims[d + 1]).to(device)]

    def predict(self, x):
        """The label whose overlay makes the layers' summed goodness largest."""
        goodness_per_label = []
        for label in range(10):
            h = overlay_y_on_x(x, label)
            goodness = []
            for layer in self.layers:
                h = layer(h)
                goodness = goodness + [h.pow(2).mean(1)]
            goodness_per_label += [sum(goodness).unsqueeze(1)]
        goodness_per_label = torch.cat(goodness_per_label, 1)
        return goodness_per_label.argmax(1)

    def train(self, x_pos, x_neg):
        h_pos, h_neg = x_pos, x_neg
        for i, layer in enumerate(self.layers):
            print("training layer: ", i)
            h_pos, h_neg = layer.train(h_pos, h_neg)


class Layer(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.relu = torch.nn.ReLU()
        self.opt = Adam(self.parameters(), lr=args.lr)
        self.threshold = args.threshold
        self.num_epochs = args.epochs

    def forward(self, x):
        x_direction = x / (x.norm(2, 1, keepdim=True) + 1e-4)
        return self.relu(torch.mm(x_direction, self.weight.T) + self.bias.unsqueeze(0))

    def train(self, x_pos, x_neg):
        """Push the goodness (mean squared activation) of positive samples above the threshold and that of
        negative ones below it, then hand both through to the next layer."""
        for i in range(self.num_epochs):
            g_pos = self.forward(x_pos).pow(2).mean(1)
            g_neg = self.forward(x_neg).pow(2).mean(1)
            loss = torch.log1p(torch.exp(torch.cat([-g_pos + self.threshold, g_neg - self.threshold]))).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if i % args.log_interval == 0:
                print("Loss: ", loss.item())
        return self.forward(x_pos).detach(), self.forward(x_neg).detach()


def synthetic_digits(count, seed):
    """A TensorDataset of `count` flattened SIDE x SIDE float images of ten classes and their int64 labels."""
    templates = np.random.default_rng(0).random((10, SIDE * SIDE)) > 0.5
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = templates[labels] * 0.8 + rng.random((count, SIDE * SIDE)) * 0.3
    images = (images - 0.1307) / 0.3081
    return TensorDataset(torch.tensor(images, dtype=torch.float32), torch.tensor(labels, dtype=torch.long))


def main(argv=None):
    global args, device
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20, help="training steps per layer")
    parser.add_argument("--lr", type=float, default=0.03, help="learning rate")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--train_size", type=int, default=64, help="size of training set")
    parser.add_argument("--threshold", type=float, default=2, help="threshold for training")
    parser.add_argument("--test_size", type=int, default=64, help="size of test set")
    parser.add_argument("--hidden", type=int, default=16, help="width of the two layers")
    parser.add_argument("--log-interval", type=int, default=5, help="steps between printed losses")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    train_loader = DataLoader(synthetic_digits(args.train_size, seed=1), batch_size=args.train_size)
    test_loader = DataLoader(synthetic_digits(args.test_size, seed=2), batch_size=args.test_size)

    net = Net([SIDE * SIDE, args.hidden, args.hidden])
    x, y = next(iter(train_loader))
    x, y = x.to(device), y.to(device)
    x_pos = overlay_y_on_x(x, y)
    y_neg = get_y_neg(y)
    x_neg = overlay_y_on_x(x, y_neg)
    net.train(x_pos, x_neg)
    train_error = 1.0 - net.predict(x).eq(y).float().mean().item()
    print("train error:", train_error)
    x_te, y_te = next(iter(test_loader))
    x_te, y_te = x_te.to(device), y_te.to(device)
    test_error = 1.0 - net.predict(x_te).eq(y_te).float().mean().item()
    print("test error:", test_error)
    return net, y_neg, train_error, test_error


if __name__ == "__main__":
    main()
