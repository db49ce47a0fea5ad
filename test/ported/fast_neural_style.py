"""Fast neural style transfer in the style of pytorch/examples' fast_neural_style (neural_style.py, transformer_net.py,
vgg.py, utils.py in one file), written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The pictures are synthetic (numpy stripes and blobs), 16x16, the nets narrow, and the "VGG" is a small frozen
convolution stack of VGG's shape (the example downloads pretrained VGG16 weights), so a run takes seconds. It uses
what the example uses: a transformer net of ReflectionPad2d + Conv2d layers, InstanceNorm2d(affine=True),
residual blocks and F.interpolate(mode='nearest', scale_factor=2) upsampling; a feature net cut from one
Sequential into slices with add_module, its parameters frozen with requires_grad = False, returning a namedtuple;
normalize_batch with new_tensor and an in-place div_ on the network's output; Gram matrices with view, transpose
and bmm; MSELoss content and style losses (style_loss = 0. then +=, *=), Adam, style.repeat, eval().cpu(),
torch.save of the state_dict, and stylizing under no_grad with clamp.
"""
import argparse
import os
from collections import namedtuple

import numpy as np
import torch
from torch.optim import Adam
from torch.utils.data import DataLoader, TensorDataset


# ---- transformer_net.py ----
class TransformerNet(torch.nn.Module):
    """The example's image transformation net, one downsampling and one upsampling stage shallower and of one width
    (layers of one shape share their compiled kernels: the test stays fast)."""

    def __init__(self, width=8, residual_blocks=1):
        super(TransformerNet, self).__init__()
        # downsampling convolutions
        self.conv1 = ConvLayer(3, width, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(width, affine=True)
        self.conv2 = ConvLayer(width, width, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(width, affine=True)
        # residual blocks
        self.res = torch.nn.Sequential(*[ResidualBlock(width) for _ in range(residual_blocks)])
        # upsampling
        self.deconv1 = UpsampleConvLayer(width, width, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(width, affine=True)
        self.deconv3 = ConvLayer(width, 3, kernel_size=9, stride=1)
        self.relu = torch.nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.res(y)
        y = self.relu(self.in4(self.deconv1(y)))
        return self.deconv3(y)


class ConvLayer(torch.nn.Module):
    """A convolution that keeps the size (stride 1) with reflected, not zero, padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super(ConvLayer, self).__init__()
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super(ResidualBlock, self).__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(torch.nn.Module):
    """Nearest-neighbour upsampling, then a ConvLayer (instead of a transposed convolution: no checkerboard)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super(UpsampleConvLayer, self).__init__()
        self.upsample = upsample
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        x_in = x
        if self.upsample:
            x_in = torch.nn.functional.interpolate(x_in, mode='nearest', scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x_in))


# ---- vgg.py: VGG's layout (conv-relu stages, max pools), one convolution per stage at one toy width ----
def vgg_like_features(width=4):
    layers, channels = [], 3
    for stage in range(4):
        if stage == 1:
            layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.ReLU(inplace=True)]
        channels = width
    return torch.nn.Sequential(*layers)


class Vgg16(torch.nn.Module):
    def __init__(self, requires_grad=False):
        super(Vgg16, self).__init__()
        features = vgg_like_features()
        self.slice1 = torch.nn.Sequential()
        self.slice2 = torch.nn.Sequential()
        self.slice3 = torch.nn.Sequential()
        self.slice4 = torch.nn.Sequential()
        for x in range(2):
            self.slice1.add_module(str(x), features[x])
        for x in range(2, 5):
            self.slice2.add_module(str(x), features[x])
        for x in range(5, 7):
            self.slice3.add_module(str(x), features[x])
        for x in range(7, 9):
            self.slice4.add_module(str(x), features[x])
        if not requires_grad:
            for param in self.parameters():
                param.requires_grad = False

    def forward(self, X):
        h = self.slice1(X)
        h_relu1_2 = h
        h = self.slice2(h)
        h_relu2_2 = h
        h = self.slice3(h)
        h_relu3_3 = h
        h = self.slice4(h)
        h_relu4_3 = h
        vgg_outputs = namedtuple("VggOutputs", ['relu1_2', 'relu2_2', 'relu3_3', 'relu4_3'])
        return vgg_outputs(h_relu1_2, h_relu2_2, h_relu3_3, h_relu4_3)


# ---- utils.py ----
def gram_matrix(y):
    (b, ch, h, w) = y.size()
    features = y.view(b, ch, w * h)
    features_t = features.transpose(1, 2)
    return features.bmm(features_t) / (ch * h * w)


def normalize_batch(batch):
    """0..255 images -> ImageNet-normalized ones (divides `batch` by 255 in place, as the example does)."""
    mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    batch = batch.div_(255.0)
    return (batch - mean) / std


def to_tensor_255(image):
    """An HxWx3 uint8 picture -> a 3xHxW float tensor of 0..255 (the example's ToTensor() then x.mul(255))."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255).mul(255)


def pictures(count, size, seed):
    """`count` size x size x 3 uint8 pictures: coloured stripes under a bright blob."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    result = []
    for _ in range(count):
        phase, freq = rng.uniform(0, 6), rng.uniform(0.3, 1.2)
        stripes = 0.5 + 0.5 * np.sin(freq * (grid[:, None] + grid[None, :]) + phase)
        cy, cx = rng.uniform(0, size, 2)
        blob = np.exp(-((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2) / 12.0)
        colour = rng.uniform(0.2, 1.0, 3)
        result.append(np.clip((0.6 * stripes[..., None] * colour + 0.4 * blob[..., None]) * 255, 0, 255))
    return np.stack(result).astype(np.uint8)


# ---- neural_style.py ----
def train(args):
    device = torch.device("cpu")
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    images = torch.stack([to_tensor_255(p) for p in pictures(args.train_size, args.image_size, seed=1)])
    train_dataset = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    train_loader = DataLoader(train_dataset, batch_size=args.batch_size)

    transformer = TransformerNet().to(device)
    optimizer = Adam(transformer.parameters(), args.lr)
    mse_loss = torch.nn.MSELoss()

    vgg = Vgg16(requires_grad=False).to(device)
    style = to_tensor_255(pictures(1, args.image_size, seed=7)[0])
    style = style.repeat(args.batch_size, 1, 1, 1).to(device)

    features_style = vgg(normalize_batch(style))
    gram_style = [gram_matrix(y) for y in features_style]

    losses = []
    for e in range(args.epochs):
        transformer.train()
        agg_content_loss = 0.
        agg_style_loss = 0.
        count = 0
        for batch_id, (x, _) in enumerate(train_loader):
            n_batch = len(x)
            count += n_batch
            optimizer.zero_grad()

            x = x.to(device)
            y = transformer(x)

            y = normalize_batch(y)
            x = normalize_batch(x)

            features_y = vgg(y)
            features_x = vgg(x)

            content_loss = args.content_weight * mse_loss(features_y.relu2_2, features_x.relu2_2)

            style_loss = 0.
            for ft_y, gm_s in zip(features_y, gram_style):
                gm_y = gram_matrix(ft_y)
                style_loss += mse_loss(gm_y, gm_s[:n_batch, :, :])
            style_loss *= args.style_weight

            total_loss = content_loss + style_loss
            total_loss.backward()
            optimizer.step()

            agg_content_loss += content_loss.item()
            agg_style_loss += style_loss.item()
            losses.append((content_loss.item(), style_loss.item()))

            if (batch_id + 1) % args.log_interval == 0:
                print("Epoch {}:\t[{}/{}]\tcontent: {:.6f}\tstyle: {:.6f}\ttotal: {:.6f}".format(
                    e + 1, count, len(train_dataset),
                    agg_content_loss / (batch_id + 1),
                    agg_style_loss / (batch_id + 1),
                    (agg_content_loss + agg_style_loss) / (batch_id + 1)))

    transformer.eval().cpu()
    save_model_path = os.path.join(args.save_model_dir, "epoch_{}.model".format(args.epochs))
    torch.save(transformer.state_dict(), save_model_path)
    print("\nDone, trained model saved at", save_model_path)
    return save_model_path, losses


def stylize(args, model_path):
    device = torch.device("cpu")
    content_image = to_tensor_255(pictures(1, args.image_size, seed=11)[0])
    content_image = content_image.unsqueeze(0).to(device)
    with torch.no_grad():
        style_model = TransformerNet()
        state_dict = torch.load(model_path)
        style_model.load_state_dict(state_dict)
        style_model.to(device)
        style_model.eval()
        output = style_model(content_image).cpu()
    return output[0].clone().clamp(0, 255).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description="parser for fast-neural-style")
    parser.add_argument("--epochs", type=int, default=2, help="number of training epochs")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size for training")
    parser.add_argument("--train-size", type=int, default=8, help="number of training pictures")
    parser.add_argument("--save-model-dir", type=str, default=".", help="where the trained model is saved")
    parser.add_argument("--image-size", type=int, default=16, help="size of training images")
    parser.add_argument("--seed", type=int, default=42, help="random seed for training")
    parser.add_argument("--content-weight", type=float, default=1e5, help="weight for content-loss")
    parser.add_argument("--style-weight", type=float, default=1e10, help="weight for style-loss")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--log-interval", type=int, default=1, help="batches between printed losses")
    args = parser.parse_args(argv)
    os.makedirs(args.save_model_dir, exist_ok=True)
    model_path, losses = train(args)
    return losses, stylize(args, model_path)


if __name__ == "__main__":
    main()
