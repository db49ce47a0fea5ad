"""A tiny DCGAN in the style of pytorch/examples' dcgan/main.py, written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The "dataset" is synthetic (soft blobs drawn with numpy, scaled to [-1, 1] like the example's Normalize), the images
are 8x8 and the nets narrow, so a run takes seconds. It uses what the example uses: a generator of
ConvTranspose2d / BatchNorm2d / ReLU(True) layers ending in Tanh, a discriminator of strided Conv2d / BatchNorm2d /
LeakyReLU(0.2, inplace=True) ending in Sigmoid, Module.apply of a weights_init that picks layers by class name
(nn.init.normal_ / zeros_), BCELoss on torch.full labels refilled with fill_, fake.detach() for the
discriminator's step, two Adam optimizers with betas, zero_grad on the modules, .item() for the printed numbers,
and torch.save of both nets' state_dicts each epoch.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data


def weights_init(m):
    """DCGAN's initialization: N(0, 0.02) convolution weights, N(1, 0.02) BatchNorm scales and zero shifts."""
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """nz x 1 x 1 noise -> nc x 8 x 8 image in (-1, 1) (the example's generator, two stages shallower)."""

    def __init__(self, nz, ngf, nc):
        super(Generator, self).__init__()
        self.main = nn.Sequential(
            # noise, seen as a 1x1 image with nz channels
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # (ngf*2) x 4 x 4
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh()
            # nc x 8 x 8
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    """nc x 8 x 8 image -> the probability that it is real, one per image."""

    def __init__(self, ndf, nc):
        super(Discriminator, self).__init__()
        self.main = nn.Sequential(
            # nc x 8 x 8
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf),
            nn.LeakyReLU(0.2, inplace=True),
            # ndf x 4 x 4
            nn.Conv2d(ndf, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def blobs(count, size, nc, seed):
    """`count` nc x size x size float images in [-1, 1]: one Gaussian blob each, at a random place."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    centers = rng.uniform(2, size - 2, (count, 2))
    rows = np.exp(-(grid[None, :] - centers[:, :1]) ** 2 / 4.0)
    cols = np.exp(-(grid[None, :] - centers[:, 1:]) ** 2 / 4.0)
    images = rows[:, :, None] * cols[:, None, :]
    images = np.repeat(images[:, None], nc, axis=1) * rng.uniform(0.6, 1.0, (count, nc, 1, 1))
    images = images * 2 - 1
    return torch.utils.data.TensorDataset(torch.tensor(images, dtype=torch.float32),
                                          torch.zeros(count, dtype=torch.long))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--batchSize', type=int, default=8, help='input batch size')
    parser.add_argument('--imageSize', type=int, default=8, help='the height / width of the images')
    parser.add_argument('--train-size', type=int, default=64, help='number of training images')
    parser.add_argument('--nz', type=int, default=8, help='size of the latent z vector')
    parser.add_argument('--ngf', type=int, default=4, help='number of generator filters')
    parser.add_argument('--ndf', type=int, default=4, help='number of discriminator filters')
    parser.add_argument('--niter', type=int, default=2, help='number of epochs to train for')
    parser.add_argument('--lr', type=float, default=0.0002, help='learning rate')
    parser.add_argument('--beta1', type=float, default=0.5, help='beta1 for adam')
    parser.add_argument('--netG', default='', help="path to netG (to continue training)")
    parser.add_argument('--netD', default='', help="path to netD (to continue training)")
    parser.add_argument('--outf', default='.', help='folder to output model checkpoints')
    parser.add_argument('--manualSeed', type=int, default=999, help='manual seed')
    parser.add_argument('--no-shuffle', action='store_true',
                        help='read the images in order (the frameworks shuffle differently)')
    opt = parser.parse_args(argv)
    print(opt)

    os.makedirs(opt.outf, exist_ok=True)
    torch.manual_seed(opt.manualSeed)
    device = torch.device("cpu")
    nc = 3

    dataset = blobs(opt.train_size, opt.imageSize, nc, seed=opt.manualSeed)
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=opt.batchSize, shuffle=not opt.no_shuffle)

    netG = Generator(opt.nz, opt.ngf, nc).to(device)
    netG.apply(weights_init)
    if opt.netG != '':
        netG.load_state_dict(torch.load(opt.netG))
    print(netG)

    netD = Discriminator(opt.ndf, nc).to(device)
    netD.apply(weights_init)
    if opt.netD != '':
        netD.load_state_dict(torch.load(opt.netD))
    print(netD)

    criterion = nn.BCELoss()

    real_label = 1
    fake_label = 0

    optimizerD = optim.Adam(netD.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))

    history = []
    for epoch in range(opt.niter):
        for i, data in enumerate(dataloader, 0):
            # (1) the discriminator: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real = data[0].to(device)
            batch_size = real.size(0)
            label = torch.full((batch_size,), real_label, dtype=real.dtype, device=device)

            output = netD(real)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()

            noise = torch.randn(batch_size, opt.nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()

            # (2) the generator: maximize log(D(G(z)))
            netG.zero_grad()
            label.fill_(real_label)   # the generator wants its fakes called real
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()

            print('[%d/%d][%d/%d] Loss_D: %.6f Loss_G: %.6f D(x): %.6f D(G(z)): %.6f / %.6f'
                  % (epoch, opt.niter, i, len(dataloader),
                     errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
            history.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))

        # checkpoints
        torch.save(netG.state_dict(), '%s/netG_epoch_%d.pth' % (opt.outf, epoch))
        torch.save(netD.state_dict(), '%s/netD_epoch_%d.pth' % (opt.outf, epoch))
    return netG, netD, history


if __name__ == '__main__':
    main()
