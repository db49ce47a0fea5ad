"""Neural-network layers, losses and containers with PyTorch's names, arguments, defaults and state_dict keys.

`Module` and `Parameter` (module.py) register parameters and buffers; layers live in layers.py (Linear,
convolutions, Embedding, Dropout, Dropout1d/2d/3d), pooling.py, resample.py (interpolate, Upsample), norm.py,
activation.py, attention.py, recurrent.py (RNN, LSTM, GRU), transformer.py, losses.py, padding.py (ZeroPad/ConstantPad/
ReflectionPad/ReplicationPad 1d-3d) and layers_more.py (Fold/Unfold, PixelShuffle, InstanceNorm, PReLU, Bilinear,
ParameterList/Dict, ...); `nn.functional` is PyTorch's
functional API; `nn.init` holds the initializers, `nn.utils` gradient clipping and `nn.state` safetensors /
PyTorch checkpoint files.
"""
from tinyjit.nn import functional, init, utils  # noqa: F401
from tinyjit.nn.activation import (CELU, ELU, GELU, GLU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU,  # noqa: F401
                                   LogSigmoid, LogSoftmax, Mish, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Softmin,
                                   Softplus, Softsign, Tanh)
from tinyjit.nn.attention import MultiheadAttention  # noqa: F401
from tinyjit.nn.layers import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,  # noqa: F401
                               ConvTranspose3d, Dropout, Dropout1d, Dropout2d, Dropout3d, Embedding, Flatten,
                               Identity, Linear, Unflatten)
from tinyjit.nn.losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss,  # noqa: F401
                               NLLLoss)
from tinyjit.nn.module import Module, ModuleDict, ModuleList, Parameter, Sequential  # noqa: F401
from tinyjit.nn.pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AvgPool1d,  # noqa: F401
                                AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d)
from tinyjit.nn.resample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401
from tinyjit.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: F401
from tinyjit.nn.transformer import (TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,  # noqa: F401
                                    TransformerEncoderLayer)
from tinyjit.nn.layers_more import (SELU, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d,  # noqa: F401
                                    Bilinear, CosineSimilarity, Fold, Hardshrink, InstanceNorm1d, InstanceNorm2d,
                                    InstanceNorm3d, PairwiseDistance, ParameterDict, ParameterList, PixelShuffle,
                                    PixelUnshuffle, PReLU, Softshrink, Tanhshrink, Threshold, Unfold)
from tinyjit.nn.padding import (ConstantPad1d, ConstantPad2d, ConstantPad3d, ReflectionPad1d,  # noqa: F401
                                ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d, ReplicationPad3d,
                                ZeroPad1d, ZeroPad2d, ZeroPad3d)
from tinyjit.nn.norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, LayerNorm, RMSNorm  # noqa: F401
