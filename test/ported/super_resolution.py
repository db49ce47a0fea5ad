"""Sub-pixel super-resolution in the style of pytorch/examples' super_resolution (model.py, dataset.py, main.py in one
file), written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The pictures are synthetic (numpy patterns instead of BSDS300's luminance channel) and 12x12, the layers narrow,
so a run takes seconds. It uses what the example uses: Conv2d layers with tuple kernel/stride/padding, ReLU, a
final nn.PixelShuffle, init.orthogonal_ with init.calculate_gain('relu'), a Dataset subclass whose __getitem__
makes the low-resolution input (here with F.interpolate(mode='bicubic', antialias=True), PIL-style, where the
example resizes with PIL), MSELoss, Adam, loss.item() sums, the PSNR of each test batch with math.log10 under
no_grad, and a checkpoint per epoch (of the state_dict: see the test).
"""
import argparse
from math import log10

import numpy as np
import torch
import torch.nn as nn
import torch.nn.init as init
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import Dataset
import torch.utils.data


# ---- model.py ----
class Net(nn.Module):
    def __init__(self, upscale_factor, width=8):
        super(Net, self).__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 2 * width, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(2 * width, 2 * width, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(2 * width, width, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(width, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        self._initialize_weights()

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))

    def _initialize_weights(self):
        init.orthogonal_(self.conv1.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv2.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv3.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv4.weight)


# ---- dataset.py ----
class DatasetFromPatterns(Dataset):
    """(low-resolution input, full-resolution target) pairs of 1 x size x size luminance images in [0, 1]."""

    def __init__(self, count, size, upscale_factor, seed):
        super(DatasetFromPatterns, self).__init__()
        rng = np.random.default_rng(seed)
        grid = np.linspace(0, 1, size)
        self.images = []
        for _ in range(count):
            fy, fx, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6)
            picture = 0.5 + 0.4 * np.sin(2 * np.pi * (fy * grid[:, None] + fx * grid[None, :]) + phase)
            self.images.append((picture + rng.normal(0, 0.02, picture.shape)).astype(np.float32))
        self.upscale_factor = upscale_factor

    def __getitem__(self, index):
        target = torch.from_numpy(self.images[index]).unsqueeze(0)
        input = F.interpolate(target.unsqueeze(0), scale_factor=1 / self.upscale_factor, mode='bicubic',
                              align_corners=False, antialias=True).squeeze(0)
        return input, target

    def __len__(self):
        return len(self.images)


# ---- main.py ----
def main(argv=None):
    parser = argparse.ArgumentParser(description='PyTorch Super Res Example')
    parser.add_argument('--upscale_factor', type=int, default=3, help="super resolution upscale factor")
    parser.add_argument('--batchSize', type=int, default=4, help='training batch size')
    parser.add_argument('--testBatchSize', type=int, default=4, help='testing batch size')
    parser.add_argument('--nEpochs', type=int, default=2, help='number of epochs to train for')
    parser.add_argument('--lr', type=float, default=0.01, help='Learning Rate. Default=0.01')
    parser.add_argument('--seed', type=int, default=123, help='random seed to use. Default=123')
    parser.add_argument('--train-size', type=int, default=8, help='number of training pictures')
    parser.add_argument('--no-shuffle', action='store_true',
                        help='read the pictures in order (the frameworks shuffle differently)')
    opt = parser.parse_args(argv)
    print(opt)

    torch.manual_seed(opt.seed)
    device = torch.device("cpu")

    print('===> Loading datasets')
    train_set = DatasetFromPatterns(opt.train_size, 12, opt.upscale_factor, seed=1)
    test_set = DatasetFromPatterns(8, 12, opt.upscale_factor, seed=2)
    training_data_loader = torch.utils.data.DataLoader(dataset=train_set, batch_size=opt.batchSize,
                                                       shuffle=not opt.no_shuffle)
    testing_data_loader = torch.utils.data.DataLoader(dataset=test_set, batch_size=opt.testBatchSize,
                                                      shuffle=False)

    print('===> Building model')
    model = Net(upscale_factor=opt.upscale_factor).to(device)
    criterion = nn.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=opt.lr)

    def train(epoch):
        epoch_loss = 0
        for iteration, batch in enumerate(training_data_loader, 1):
            input, target = batch[0].to(device), batch[1].to(device)

            optimizer.zero_grad()
            loss = criterion(model(input), target)
            epoch_loss += loss.item()
            loss.backward()
            optimizer.step()

            print("===> Epoch[{}]({}/{}): Loss: {:.6f}".format(epoch, iteration, len(training_data_loader),
                                                              loss.item()))
        print("===> Epoch {} Complete: Avg. Loss: {:.6f}".format(epoch, epoch_loss / len(training_data_loader)))

    def test():
        avg_psnr = 0
        with torch.no_grad():
            for batch in testing_data_loader:
                input, target = batch[0].to(device), batch[1].to(device)
                prediction = model(input)
                mse = criterion(prediction, target)
                psnr = 10 * log10(1 / mse.item())
                avg_psnr += psnr
        print("===> Avg. PSNR: {:.6f} dB".format(avg_psnr / len(testing_data_loader)))
        return avg_psnr / len(testing_data_loader)

    def checkpoint(epoch):
        model_out_path = "model_epoch_{}.pth".format(epoch)
        torch.save(model.state_dict(), model_out_path)
        print("Checkpoint saved to {}".format(model_out_path))

    psnrs = []
    for epoch in range(1, opt.nEpochs + 1):
        train(epoch)
        psnrs.append(test())
        checkpoint(epoch)
    return model, psnrs


if __name__ == '__main__':
    main()
