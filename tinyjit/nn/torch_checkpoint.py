"""Reading PyTorch ``.pth`` checkpoints (``torch.save`` since 1.6) with numpy alone; torch is never imported.

A checkpoint is a zip: ``<prefix>/data.pkl`` is a pickle of the saved object in which every tensor is a call to a
rebuild function in ``torch._utils``, and every storage is a persistent id ``('storage', <storage type>, <key>,
<location>, <numel>)`` whose bytes are the zip member ``<prefix>/data/<key>``. Legacy storage types
(FloatStorage...) carry the dtype; tensors of newer dtypes use an untyped (byte) storage and pass the dtype to the
rebuild call.

The file is untrusted, so the loader holds three lines (each with its test in test/test_state.py):
- **Nothing runs.** The unpickler resolves only the rebuild functions, storage types, dtypes and OrderedDict, and
  its container opcodes (BUILD, SETITEM(S), APPEND(S), ADDITEMS) act only on the plain containers the format
  needs, so a pickle can neither call nor modify anything else, the loader included.
- **Memory follows the file.** Every storage's size is checked against its zip member, and every member against
  the archive, before anything is allocated; a tensor's (offset, size, stride) must fit in its storage, and it
  stays a view of it (an expanded tensor is never materialized, tensors that share a storage share memory).
- **Malformed input is a format error naming the file**, never a RecursionError or an unbounded walk:
  containers are walked iteratively, with a nesting limit, a cycle check and a budget of visits.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import reprlib
import struct
import zipfile
from typing import Any

import numpy as np

# storage class (typed storages) or torch dtype name (untyped storages) -> numpy dtype; bfloat16 is read as its
# uint16 bit patterns and widened to float32 (numpy has no bfloat16)
_TORCH_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                   "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "uint16",
                 "uint32", "uint64", "bool")


def _stored_dtype(name: str) -> np.dtype:
    """The numpy dtype of the stored items of torch dtype `name` (little-endian; bfloat16 as uint16 bits)."""
    return np.dtype("<u2" if name == "bfloat16" else np.dtype(name).newbyteorder("<"))


# torch.save stores members uncompressed, so their sizes add up to at most the file's. A recompressed archive is
# still read, but the members together may inflate to at most this many times the file's size: a 3 MB zip of
# zeros can declare a 3 GiB member.
_MAX_INFLATION = 16
# torch's own checkpoints nest containers a handful of levels deep
_MAX_NESTING = 100
# walking the unpickled object (to check it, flatten it, convert it) visits at most this many items per byte of
# pickle: without shared containers a walk visits fewer items than the pickle has opcodes, so this only stops
# pickles that reuse containers to make an exponentially large tree
_VISITS_PER_PICKLE_BYTE = 4
_MIN_VISITS = 100_000
# numpy arrays have at most this many dims
_MAX_DIMS = 64

_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 80


class _FormatError(pickle.UnpicklingError):
    """A malformed checkpoint. torch_load adds the file name."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for torch.FloatStorage etc. during unpickling; ``dtype`` is None for an untyped byte storage."""
    dtype: str | None


@dataclasses.dataclass(frozen=True)
class _TorchDType:
    """Stands in for a torch dtype (torch.uint16 ...) during unpickling."""
    name: str


class _Storage:
    """A storage read from the zip: its raw bytes, and the dtype its tensors view it with (fixed by the first)."""

    def __init__(self, key: str, data: np.ndarray, dtype: str | None, big_endian: bool):
        self.key, self.data, self.dtype, self.big_endian = key, data, dtype, big_endian
        self._native: np.ndarray | None = None
        self._tensor = None

    def use_as(self, dtype: str) -> None:
        if self.dtype is None:
            self.dtype = dtype
        if self.dtype != dtype:  # torch.save refuses this too
            raise _FormatError(f"storage {self.key} is viewed as both {self.dtype} and {dtype}")
        if self.data.size % _stored_dtype(dtype).itemsize:
            raise _FormatError(f"storage {self.key} of {self.data.size} bytes is not a whole number of {dtype} items")

    @property
    def numel(self) -> int:
        return self.data.size // _stored_dtype(self.dtype).itemsize

    def native(self) -> np.ndarray:
        """The storage as a flat native-endian array of its dtype (bfloat16 widened to float32), made once."""
        if self._native is None:
            flat = self.data.view(_stored_dtype(self.dtype).newbyteorder(">" if self.big_endian else "<"))
            if self.big_endian:
                flat = flat.byteswap(inplace=True).view(flat.dtype.newbyteorder("="))
            self._native = (flat.astype(np.uint32) << 16).view(np.float32) if self.dtype == "bfloat16" else flat
        return self._native

    def tensor(self):
        """The storage as a flat tinyjit Tensor on the default device, copied there once."""
        if self._tensor is None:
            from tinyjit.tensor import Tensor
            self._tensor = Tensor(self.native())
        return self._tensor


@dataclasses.dataclass(frozen=True, eq=False)
class _TensorView:
    """A tensor of the checkpoint: (offset, size, stride) in items of its storage, already bounds-checked."""
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if not isinstance(storage, _Storage) or storage.dtype is None:
        raise _FormatError("_rebuild_tensor_v2 needs a typed storage")
    return _tensor_view(storage, storage.dtype, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(storage, _Storage) or not isinstance(dtype, _TorchDType):
        raise _FormatError("_rebuild_tensor_v3 needs a storage and a dtype")
    return _tensor_view(storage, dtype.name, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """nn.Parameter -> its data; parameters are plain tensors here."""
    if not isinstance(data, _TensorView):
        raise _FormatError("_rebuild_parameter expects a tensor")
    return data


def _tensor_view(storage: _Storage, dtype: str, offset, size, stride) -> _TensorView:
    """Check a tensor's view of its storage (offset, size, stride in items) before anything reads it."""
    ok = (type(offset) is int and isinstance(size, tuple) and isinstance(stride, tuple)
          and len(size) == len(stride) <= _MAX_DIMS and all(type(v) is int for v in size + stride))
    if not ok or offset < 0 or min(size + stride, default=0) < 0:
        raise _FormatError(f"invalid tensor view: offset={_short_repr.repr(offset)} size={_short_repr.repr(size)} "
                           f"stride={_short_repr.repr(stride)}")
    storage.use_as(dtype)
    numel = math.prod(size)
    itemsize = storage.native().itemsize if numel else 1
    if max(size, default=0) >= 2 ** 63 or numel * itemsize >= 2 ** 63:
        raise _FormatError(f"tensor of size {size} is too large to address")
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise _FormatError(f"tensor view (offset {offset}, size {size}, stride {stride}) reaches item {last} of "
                               f"storage {storage.key}, which holds {storage.numel}")
    return _TensorView(storage, offset, size, stride)


class _Archive:
    """The zip of a checkpoint: members are read through here, against one budget of bytes for the whole file."""

    def __init__(self, zf: zipfile.ZipFile, path, prefix: str):
        self.zf, self.path, self.prefix = zf, path, prefix
        self.file_size = os.stat(path).st_size
        self.budget = _MAX_INFLATION * self.file_size

    def info(self, name: str, expected_size: int | None = None) -> zipfile.ZipInfo:
        """The member `name`, charged to the budget; its declared size must be `expected_size` when given."""
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise _FormatError(f"{name} is missing from the checkpoint") from None
        if expected_size is not None and info.file_size != expected_size:
            raise _FormatError(f"{name} holds {info.file_size} bytes but the pickle declares {expected_size}")
        if info.compress_type == zipfile.ZIP_STORED and (info.compress_size != info.file_size
                                                         or info.header_offset + info.file_size > self.file_size):
            raise _FormatError(f"{name} is stored uncompressed but declares {info.file_size} bytes in "
                               f"{info.compress_size} at offset {info.header_offset} of a file of {self.file_size}")
        if info.file_size > self.budget:
            raise _FormatError(f"{name} declares {info.file_size} bytes, more than a file of {self.file_size} "
                               f"bytes may hold ({_MAX_INFLATION}x its size, all members together)")
        self.budget -= info.file_size
        return info

    def read(self, name: str, expected_size: int | None) -> np.ndarray:
        """The bytes of member `name` in a fresh writable array, read in chunks (never more than declared)."""
        info = self.info(name, expected_size)
        out = np.empty(info.file_size, dtype=np.uint8)
        with self.zf.open(info) as f:
            filled = 0
            while filled < out.size:
                chunk = f.read(min(out.size - filled, 1 << 24))
                if not chunk:
                    raise _FormatError(f"{name} is truncated: {filled} of {out.size} bytes")
                out[filled:filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                filled += len(chunk)
        return out


def _target_below_mark(unpickler) -> Any:
    """The object under the topmost MARK: what SETITEMS, APPENDS and ADDITEMS modify."""
    if not unpickler.metastack or not unpickler.metastack[-1]:
        raise _FormatError("container opcode without a container")
    return unpickler.metastack[-1][-1]


def _require(target: Any, types: tuple, opcode: str) -> None:
    if type(target) not in types:
        raise _FormatError(f"{opcode} on a {type(target).__name__}: only {'/'.join(t.__name__ for t in types)} "
                           "may be modified while loading")


_DICTS = (dict, collections.OrderedDict)


class _TorchUnpickler(pickle._Unpickler):
    """Unpickler for torch.save's data.pkl that only rebuilds tensors and plain containers.

    Torch's own rebuild functions are replaced by the checked versions above; storage classes and dtypes become
    inert markers; every other global is refused, so a checkpoint cannot run code while it is loaded. The
    opcodes that modify an object already built act only on plain containers (a BUILD on anything else could set
    attributes of the loader's own functions, e.g. ``_rebuild_tensor_v3.__defaults__``). This is pickle's
    pure-Python unpickler, whose opcodes can be overridden one by one; data.pkl holds no tensor data, so it is small.
    """
    _FUNCTIONS = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,  # what state_dict() returns
    }
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, archive: _Archive, big_endian: bool):
        super().__init__(file)
        self.archive, self.big_endian = archive, big_endian
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._FUNCTIONS:
            return self._FUNCTIONS[(module, name)]
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if module in ("torch", "torch.storage") and name == "UntypedStorage":
            return _StorageType(None)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDType(name)
        raise _FormatError(f"refusing to unpickle {_short_repr.repr(module)[1:-1]}.{_short_repr.repr(name)[1:-1]}: "
                           "torch_load only rebuilds tensors and plain containers")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and type(pid[4]) is int and pid[4] >= 0):
            raise _FormatError(f"unsupported persistent id {_short_repr.repr(pid)}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        nbytes = numel * (_stored_dtype(storage_type.dtype).itemsize if storage_type.dtype else 1)
        if key not in self.storages:  # tensors that share a storage share one read of it
            data = self.archive.read(f"{self.archive.prefix}/data/{key}", nbytes)
            self.storages[key] = _Storage(key, data, storage_type.dtype, self.big_endian)
        storage = self.storages[key]
        if storage_type.dtype is not None:
            storage.use_as(storage_type.dtype)
        if storage.data.size != nbytes:
            raise _FormatError(f"storage {key} is declared with {nbytes} bytes and with {storage.data.size}")
        return storage

    # ---- opcodes that modify an object already built: plain containers only ----
    def load_build(self):
        """BUILD sets the state of the object under it. The only one the format needs is an OrderedDict's
        (a state_dict's ``_metadata`` attribute), which rebuilding tensors does not use: it is dropped."""
        if len(self.stack) < 2:
            raise _FormatError("BUILD without an object")
        _require(self.stack[-2], (collections.OrderedDict,), "BUILD")
        state = self.stack.pop()
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not (state is None or type(state) is dict and all(type(k) is str for k in state)):
            raise _FormatError(f"BUILD of an OrderedDict with state {_short_repr.repr(state)}")
    dispatch[pickle.BUILD[0]] = load_build

    def load_setitem(self):
        if len(self.stack) < 3:
            raise _FormatError("SETITEM without a dict")
        _require(self.stack[-3], _DICTS, "SETITEM")
        super().load_setitem()
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        _require(_target_below_mark(self), _DICTS, "SETITEMS")
        super().load_setitems()
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self):
        if len(self.stack) < 2:
            raise _FormatError("APPEND without a list")
        _require(self.stack[-2], (list,), "APPEND")
        super().load_append()
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self):
        _require(_target_below_mark(self), (list,), "APPENDS")
        super().load_appends()
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self):
        _require(_target_below_mark(self), (set,), "ADDITEMS")
        super().load_additems()
    dispatch[pickle.ADDITEMS[0]] = load_additems


def torch_load(path: str | os.PathLike, as_numpy: bool = False, flatten: bool = False) -> Any:
    """Read a zip-format PyTorch checkpoint (``torch.save`` since 1.6) without importing torch.

    Unpickling is restricted to what rebuilds tensors (see ``_TorchUnpickler``); anything else, such as a class
    from the training code or ``os.system``, raises ``pickle.UnpicklingError`` naming it, before it could run. A
    malformed file (sizes that do not match, views outside their storage, containers nested deeper than
    ``_MAX_NESTING`` or containing themselves) raises ``pickle.UnpicklingError`` naming the file; a file that is
    not a zip-format checkpoint raises ValueError.

    Tensors stay views of their storage, as in torch: with ``as_numpy=True`` they are numpy views (tensors that
    share a storage share memory; a view that overlaps itself, such as an expanded tensor, is read-only); else
    each storage is copied to the default device once, a tensor covering a whole storage is that buffer, and any
    other tensor is a lazy view of it (movement ops, computed when used).

    By default the unpickled object is returned as saved, like ``torch.load``: a state_dict is a dict of tensors,
    a checkpoint ``{"model": sd, "iter": 3}`` keeps its nested dicts, lists, tuples, numbers and strings, and a
    single saved tensor is that tensor. With ``flatten=True`` the result is ``{name: Tensor}``: nested dicts and
    lists are flattened with dotted keys (``{"model": {"fc.weight": w}}`` -> ``"model.fc.weight"``, list items by
    index) and non-tensor leaves such as epoch counters or learning rates are left out.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip-format PyTorch checkpoint (files from torch.save before 1.6 or with "
                         "_use_new_zipfile_serialization=False are not supported)")
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <prefix>/data.pkl in the zip, found {pickles or 'none'}")
        archive = _Archive(zf, path, pickles[0][:-len("/data.pkl")])
        try:
            big_endian = _big_endian(archive)
            # read whole (its size is charged to the budget): the pure-Python unpickler reads a byte at a time
            data_pkl = archive.read(pickles[0], None)
            obj = _TorchUnpickler(io.BytesIO(data_pkl), archive, big_endian).load()
            visits = max(_MIN_VISITS, _VISITS_PER_PICKLE_BYTE * data_pkl.size)
            _check_structure(obj, visits)
        except _FormatError as e:
            raise pickle.UnpicklingError(f"{path}: {e}") from None
        except (EOFError, TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError, struct.error,
                zipfile.BadZipFile, pickle.UnpicklingError) as e:
            # what pickle's own opcodes raise for a garbled stream, a bad CRC, a key that cannot be hashed ...
            raise pickle.UnpicklingError(f"{path}: malformed data.pkl ({type(e).__name__}: {e})") from e
    if not flatten:
        return _convert(obj, _TensorMaker(as_numpy))
    if isinstance(obj, _TensorView):
        raise TypeError(f"{path} holds a single tensor, not a dict of them; use flatten=False")
    flat: dict[str, _TensorView] = {}
    _flatten(obj, "", flat)
    make = _TensorMaker(as_numpy)
    return {k: make(v) for k, v in flat.items()}


def _big_endian(archive: _Archive) -> bool:
    # Older torch versions do not write this member; their checkpoints are little-endian in practice.
    member = f"{archive.prefix}/byteorder"
    if member not in archive.zf.namelist():
        return False
    info = archive.info(member)
    if info.file_size > 16:
        raise _FormatError(f"{member} of {info.file_size} bytes is not a byte order")
    byteorder = archive.zf.read(info).decode(errors="replace").strip()
    if byteorder not in ("little", "big"):
        raise _FormatError(f"unknown byteorder {_short_repr.repr(byteorder)}")
    return byteorder == "big"


_CONTAINERS = (dict, list, tuple, set, frozenset)


def _children(obj) -> list:
    """What a container holds: a dict's keys and values, the items of the others."""
    return [v for kv in obj.items() for v in kv] if isinstance(obj, dict) else list(obj)


def _check_structure(root: Any, max_visits: int) -> None:
    """Refuse an unpickled object that nests containers deeper than _MAX_NESTING, contains itself, or whose tree
    (shared containers counted each time they are reached) has more than `max_visits` items. Afterwards the
    recursive walks below (_flatten, _convert) are bounded in depth and work. Iterative: it cannot overflow."""
    on_path: set[int] = set()
    stack = [(root, False)]
    visits = 0
    while stack:
        obj, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        visits += 1
        if visits > max_visits:
            raise _FormatError(f"the pickled object has more than {max_visits} items (counting shared containers "
                               "each time they are reached)")
        if not isinstance(obj, _CONTAINERS):
            continue
        if id(obj) in on_path:
            raise _FormatError(f"a {type(obj).__name__} contains itself")
        if len(on_path) >= _MAX_NESTING:
            raise _FormatError(f"containers are nested more than {_MAX_NESTING} levels deep")
        on_path.add(id(obj))
        stack.append((obj, True))
        stack.extend((child, False) for child in reversed(_children(obj)))


def _flatten(obj: Any, prefix: str, out: dict[str, _TensorView]) -> None:
    if isinstance(obj, _TensorView):
        if prefix in out:
            raise ValueError(f"two tensors flatten to the same key {prefix!r}; use flatten=False")
        out[prefix] = obj
    elif isinstance(obj, (dict, list, tuple)):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def _convert(obj: Any, make: _TensorMaker, done: dict[int, Any] | None = None) -> Any:
    """`obj` with its tensors made by `make`; a container reached twice is converted once (sharing is kept)."""
    done = {} if done is None else done
    if isinstance(obj, _TensorView):
        return make(obj)
    if not isinstance(obj, _CONTAINERS):
        return obj
    if id(obj) not in done:
        if isinstance(obj, dict):
            done[id(obj)] = type(obj)((_convert(k, make, done), _convert(v, make, done)) for k, v in obj.items())
        else:
            done[id(obj)] = type(obj)(_convert(v, make, done) for v in obj)
    return done[id(obj)]


class _TensorMaker:
    """_TensorView -> numpy view of its storage (as_numpy) or tinyjit Tensor; the same view gives the same result."""

    def __init__(self, as_numpy: bool):
        self.as_numpy = as_numpy
        self.made: dict[int, Any] = {}

    def __call__(self, view: _TensorView) -> Any:
        if id(view) not in self.made:
            self.made[id(view)] = self._numpy(view) if self.as_numpy else self._tensor(view)
        return self.made[id(view)]

    @staticmethod
    def _numpy(view: _TensorView) -> np.ndarray:
        flat = view.storage.native()
        if math.prod(view.size) == 0:
            return np.zeros(view.size, dtype=flat.dtype)
        return np.lib.stride_tricks.as_strided(flat[view.offset:], shape=view.size,
                                               strides=[s * flat.itemsize for s in view.stride],
                                               writeable=not _overlaps_itself(view.size, view.stride))

    @staticmethod
    def _tensor(view: _TensorView):
        from tinyjit.lazy import Node
        from tinyjit.tensor import Tensor
        storage = view.storage
        if math.prod(view.size) == 0:
            return Tensor(np.zeros(view.size, dtype=storage.native().dtype))
        flat = storage.tensor()
        dense = tuple(s for n, s in zip(view.size, view.stride) if n > 1)
        contiguous = tuple(math.prod(view.size[i + 1:]) for i, n in enumerate(view.size) if n > 1)
        if view.offset == 0 and math.prod(view.size) == storage.numel and dense == contiguous:
            return Tensor(Node.from_buffer(flat.node.buffer, view.size))   # the whole storage: its own buffer
        return strided_view(flat, view.offset, view.size, view.stride)


def _sorted_dims(size, stride) -> list[int]:
    """The dims that move through memory (size > 1, stride > 0), outermost (largest stride) first."""
    return sorted((i for i, (n, s) in enumerate(zip(size, stride)) if n > 1 and s > 0), key=lambda i: -stride[i])


def _overlaps_itself(size, stride) -> bool:
    """Whether two items of the view are the same item of the storage (an expanded or sliding-window view)."""
    if any(n > 1 and s == 0 for n, s in zip(size, stride)):
        return True
    extent = 1
    for i in reversed(_sorted_dims(size, stride)):   # innermost first: each dim must step over the ones inside it
        if stride[i] < extent:
            return True
        extent += (size[i] - 1) * stride[i]
    return False


def strided_view(flat, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    """The view (offset, size, stride in items; strides >= 0) of a 1-D Tensor `flat`, made of movement ops only,
    like ``torch.as_strided``: nothing is copied, and an expanded or self-overlapping view stays that size in
    memory. The caller checks that the view lies inside `flat`.

    The dims that move are cut out of the line [offset, offset + extent) outermost first: a dim of n items with
    stride s splits a line of length m into n rows of what the inner dims reach (m - (n-1)*s). Rows that do not
    overlap are a reshape of the padded line into (n, s); rows that overlap come from repeating the line n times
    and re-cutting it into rows of length m + s, so that row a starts a*s further into the line.
    """
    moving = _sorted_dims(size, stride)
    line = 1 + sum((size[i] - 1) * stride[i] for i in moving)
    x = flat.shrink(((offset, offset + line),))
    for i in moving:
        n, s = size[i], stride[i]
        rest = line - (n - 1) * s
        keep, before = x.shape[:-1], ((0, 0),) * (x.ndim - 1)
        if rest <= s:
            x = x.pad(before + ((0, n * s - line),)).reshape(keep + (n, s))
        else:
            x = x.reshape(keep + (1, line)).expand(keep + (n, line)).reshape(keep + (n * line,))
            x = x.pad(before + ((0, n * s),)).reshape(keep + (n, line + s))
        x = x.shrink(tuple((0, d) for d in x.shape[:-1]) + ((0, rest),))
        line = rest
    x = x.reshape(tuple(size[i] for i in moving))
    x = x.permute(sorted(range(len(moving)), key=lambda k: moving[k]))   # back into the order of the dims
    x = x.reshape(tuple(n if i in moving else 1 for i, n in enumerate(size)))
    return x.expand(size)
