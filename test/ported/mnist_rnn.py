"""A small PyTorch digit classifier that reads each image row by row with an LSTM, in the style of
pytorch/examples' mnist_rnn/main.py, written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The images are synthetic (ten noisy 10x10 templates drawn with numpy, so both frameworks see the same pixels) and
the layers are narrow, so a run takes seconds. It uses what the example uses: nn.LSTM(batch_first=True) over the
rows, the last time step's output through BatchNorm1d, Dropout2d, two Linear layers, log_softmax and nll_loss,
Adadelta with StepLR, a shuffling torch.utils.data.DataLoader, torch.no_grad evaluation with argmax accuracy, and
torch.save of the state_dict.
"""
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
import torch.utils.data

ROWS = 10   # image height = sequence length; image width = LSTM input size


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.rnn = nn.LSTM(input_size=ROWS, hidden_size=16, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(16)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, input):
        # (batch, 1, rows, cols) -> (batch, rows, cols): one row per time step, as batch_first wants
        input = input.reshape(-1, ROWS, ROWS)
        output, hidden = self.rnn(input)

        # keep the output of the last time step only
        output = output[:, -1, :]
        output = self.batchnorm(output)
        output = self.dropout1(output)
        output = self.fc1(output)
        output = F.relu(output)
        output = self.dropout2(output)
        output = self.fc2(output)
        output = F.log_softmax(output, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))
            if args.dry_run:
                break


def test(args, model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # index of the largest log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()
            if args.dry_run:
                break

    test_loss /= len(test_loader.dataset)

    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))
    return test_loss, correct


def synthetic_digits(count, seed):
    """A TensorDataset of `count` (1, ROWS, ROWS) float images of ten classes (a fixed random stroke pattern per
    class plus noise, normalized like MNIST) and their int64 labels."""
    templates = np.random.default_rng(0).random((10, 1, ROWS, ROWS)) > 0.6
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = templates[labels] * 0.8 + rng.random((count, 1, ROWS, ROWS)) * 0.4
    images = (images - 0.1307) / 0.3081
    return torch.utils.data.TensorDataset(torch.tensor(images, dtype=torch.float32),
                                          torch.tensor(labels, dtype=torch.long))


def main(argv=None):
    # Training settings
    parser = argparse.ArgumentParser(description='PyTorch MNIST-style Example using RNN')
    parser.add_argument('--batch-size', type=int, default=32, metavar='N',
                        help='input batch size for training (default: 32)')
    parser.add_argument('--test-batch-size', type=int, default=64, metavar='N',
                        help='input batch size for testing (default: 64)')
    parser.add_argument('--epochs', type=int, default=2, metavar='N',
                        help='number of epochs to train (default: 2)')
    parser.add_argument('--lr', type=float, default=0.1, metavar='LR',
                        help='learning rate (default: 0.1)')
    parser.add_argument('--gamma', type=float, default=0.7, metavar='M',
                        help='learning rate step gamma (default: 0.7)')
    parser.add_argument('--dry-run', action='store_true',
                        help='quickly check a single pass')
    parser.add_argument('--seed', type=int, default=1, metavar='S',
                        help='random seed (default: 1)')
    parser.add_argument('--log-interval', type=int, default=2, metavar='N',
                        help='how many batches to wait before logging training status')
    parser.add_argument('--train-size', type=int, default=256, help='number of training images')
    parser.add_argument('--no-shuffle', action='store_true',
                        help='read the training images in order (the frameworks shuffle differently)')
    parser.add_argument('--save-model', action='store_true',
                        help='for Saving the current Model')
    args = parser.parse_args(argv)

    device = torch.device("cpu")

    torch.manual_seed(args.seed)

    train_loader = torch.utils.data.DataLoader(
        synthetic_digits(args.train_size, seed=1),
        batch_size=args.batch_size, shuffle=not args.no_shuffle)
    test_loader = torch.utils.data.DataLoader(
        synthetic_digits(96, seed=2),
        batch_size=args.test_batch_size, shuffle=False)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    results = []
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        results.append(test(args, model, device, test_loader))
        scheduler.step()

    if args.save_model:
        torch.save(model.state_dict(), "mnist_rnn.pt")
    return model, results


if __name__ == '__main__':
    main()
