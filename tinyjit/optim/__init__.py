"""Optimizers (SGD, Adam, AdamW, RMSprop, Lion, Adagrad, Adadelta, Adamax, NAdam, RAdam, LBFGS) and learning-rate
schedulers with PyTorch's interface; every step is one fused schedule that updates parameters in place (LBFGS:
one per closure evaluation)."""
from tinyjit.optim import lr_scheduler  # noqa: F401
from tinyjit.optim.lbfgs import LBFGS  # noqa: F401
from tinyjit.optim.optimizer import Optimizer, ParamGroup  # noqa: F401
from tinyjit.optim.optimizers import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam,  # noqa: F401
                                      RAdam, RMSprop)
