"""A small variational autoencoder in the style of pytorch/examples' vae/main.py, written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The "images" are synthetic (noisy binary 8x8 patterns made with numpy, so both frameworks see the same data) and
the layers are narrow, so a run takes seconds. It uses what the example uses: nn.Linear encoder and decoder,
reparameterize with torch.randn_like and exp, sigmoid output, F.binary_cross_entropy(reduction='sum'), the KL
divergence with pow and exp, Adam, train()/eval(), torch.no_grad, torch.cat of a comparison and sampling from
torch.randn (save_image is left out).
"""
import argparse

import numpy as np
import torch
import torch.utils.data
from torch import nn, optim
from torch.nn import functional as F


class VAE(nn.Module):
    def __init__(self, pixels=64, hidden=32, latent=4):
        super(VAE, self).__init__()
        self.pixels = pixels
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.pixels))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar, pixels):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, pixels), reduction='sum')

    # see Appendix B from VAE paper:
    # Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    # https://arxiv.org/abs/1312.6114
    # 0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    return BCE + KLD


def make_images(count, seed):
    """count 1x8x8 images in [0, 1]: one of four stripe and block patterns with 10% of the pixels flipped."""
    rng = np.random.default_rng(seed)
    patterns = np.zeros((4, 8, 8), np.float32)
    patterns[0, :, ::2] = 1
    patterns[1, ::2, :] = 1
    patterns[2, :4, :4] = patterns[2, 4:, 4:] = 1
    patterns[3, 2:6, 2:6] = 1
    images = patterns[rng.integers(0, 4, count)]
    flip = rng.random(images.shape) < 0.1
    images = np.where(flip, 1 - images, images).astype(np.float32)
    return torch.from_numpy(images[:, None])


def train(epoch, model, optimizer, train_loader, device, args):
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar, model.pixels)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader),
                loss.item() / len(data)))

    average = train_loss / len(train_loader.dataset)
    print('====> Epoch: {} Average loss: {:.4f}'.format(epoch, average))
    return average


def test(epoch, model, test_loader, device, args):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, (data, _) in enumerate(test_loader):
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar, model.pixels).item()
            if i == 0:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon_batch.view(args.batch_size, 1, 8, 8)[:n]])
                assert comparison.shape == (2 * n, 1, 8, 8)

    test_loss /= len(test_loader.dataset)
    print('====> Test set loss: {:.4f}'.format(test_loss))
    return test_loss


def main(argv=None):
    parser = argparse.ArgumentParser(description='VAE Example (synthetic images)')
    parser.add_argument('--batch-size', type=int, default=16, metavar='N',
                        help='input batch size for training (default: 16)')
    parser.add_argument('--epochs', type=int, default=3, metavar='N',
                        help='number of epochs to train (default: 3)')
    parser.add_argument('--lr', type=float, default=1e-3, help='learning rate (default: 1e-3)')
    parser.add_argument('--train-size', type=int, default=64, help='number of training images')
    parser.add_argument('--seed', type=int, default=1, metavar='S',
                        help='random seed (default: 1)')
    parser.add_argument('--log-interval', type=int, default=2, metavar='N',
                        help='how many batches to wait before logging training status')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    train_images, test_images = make_images(args.train_size, 0), make_images(2 * args.batch_size, 1)
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_images, torch.zeros(len(train_images))),
        batch_size=args.batch_size, shuffle=False)
    test_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(test_images, torch.zeros(len(test_images))),
        batch_size=args.batch_size, shuffle=False)

    model = VAE().to(device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)

    history = []
    for epoch in range(1, args.epochs + 1):
        train_loss = train(epoch, model, optimizer, train_loader, device, args)
        test_loss = test(epoch, model, test_loader, device, args)
        history.append((train_loss, test_loss))
        with torch.no_grad():
            sample = torch.randn(8, 4).to(device)
            sample = model.decode(sample).cpu()
            assert sample.shape == (8, 64) and float(sample.min()) >= 0 and float(sample.max()) <= 1
    return model, history


if __name__ == '__main__':
    main()
