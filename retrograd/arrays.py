"""Array namespaces: which array library computes an op.

An op computes in the namespace of its inputs (the Python array API standard): NumPy
for ndarrays and Python scalars -- the default and the fast path, where nothing here
costs more than a type test -- and, through array-api-compat, any library that
implements the standard: CuPy on a GPU, array_api_strict (which the tests use to prove
that no op calls NumPy behind its inputs' back), PyTorch tensors. ``namespace`` is all
an op's forward needs; ``to_numpy`` and ``to_namespace`` move arrays across.

NumPy 2's main namespace has the standard's names (``concat``, ``permute_dims``,
``pow``, ``astype``...), so an op written once against ``xp`` runs on ``numpy`` itself
unchanged; ops keep NumPy-only fast paths (``out=``, strides, einsum) behind
``if xp is np``.
"""
from __future__ import annotations

import math
import types

import numpy as np

from .errors import RetrogradError

_PLAIN = (np.ndarray, np.generic, int, float, bool, complex)
_by_type: dict[type, types.ModuleType] = {}


def is_numpy(a) -> bool:
    """An ndarray, a NumPy scalar or a Python number (what the NumPy path computes on)."""
    return isinstance(a, _PLAIN)


def namespace(*arrays) -> types.ModuleType:
    """The array namespace the arrays belong to: ``numpy`` when all are NumPy arrays or
    Python scalars, else the array-api-compat namespace of the others (one per array type,
    looked up once). Arrays of two libraries are refused."""
    xp = np
    for a in arrays:
        if type(a) is np.ndarray or isinstance(a, _PLAIN) or a is None:   # (ndarray first:
            continue                                                      # 3x faster)
        other = _by_type.get(type(a)) or _lookup(a)
        if xp is not np and other is not xp:
            raise RetrogradError(f"arrays of two libraries in one op: {_name(xp)} and "
                                 f"{_name(other)} (move them with Module.to or rg.to_namespace)")
        xp = other
    return xp


def _lookup(a):
    try:
        import array_api_compat
    except ImportError:
        raise RetrogradError(
            f"a {type(a).__module__}.{type(a).__name__} is not a NumPy array: computing on "
            "other array libraries needs array-api-compat (pip install 'retrograd[array-api]')"
        ) from None
    if not array_api_compat.is_array_api_obj(a):
        raise TypeError(f"not an array: {type(a).__name__}")
    xp = _by_type[type(a)] = array_api_compat.array_namespace(a)
    return xp


def _name(xp) -> str:
    return getattr(xp, "__name__", repr(xp)).replace("array_api_compat.", "")


def name_of(a) -> str:
    """The name of an array's namespace: 'numpy', 'cupy', 'array_api_strict'..."""
    return _name(namespace(a))


def is_foreign(a) -> bool:
    """An array of another array library (it has the array API's ``__array_namespace__``,
    or array-api-compat knows it): not NumPy's, not a list, not a graph value."""
    return (not isinstance(a, (_PLAIN, list, tuple)) and a is not None
            and (hasattr(a, "__array_namespace__") or known_array(a)))


def known_array(a) -> bool:
    """Whether array-api-compat (when installed) knows ``a`` as an array (CuPy, PyTorch,
    JAX, Dask...); False without array-api-compat."""
    try:
        import array_api_compat
    except ImportError:
        return False
    return array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray)


def dtype_of(xp, dtype):
    """``dtype`` (a NumPy dtype, or the namespace's own) as namespace ``xp``'s dtype."""
    if xp is np or not isinstance(dtype, (type, np.dtype, str)):
        return dtype
    return getattr(xp, np.dtype(dtype).name)


def numpy_dtype(dtype) -> np.dtype:
    """A dtype of any namespace as NumPy's (array_api_strict.float32, torch.int64 ->
    float32, int64): the form op params and NumPy constants take."""
    if isinstance(dtype, np.dtype):
        return dtype
    if isinstance(dtype, (type, str)):                  # np.float32, "float32"
        return np.dtype(dtype)
    return np.dtype(str(dtype).rsplit(".", 1)[-1])      # array_api_strict.float64, torch.int64


_SCALAR_KINDS = {bool: "b", int: "i", float: "f", complex: "c"}
_KIND_ORDER = "biufc"


def promote(xp, *args):
    """``args`` (arrays of ``xp`` and Python scalars) cast to the dtype NumPy's promotion
    gives them, where the standard leaves mixing kinds undefined (array_api_strict refuses
    it): a boolean mask times a float array, an integer array times 0.5. Arguments of one
    kind are returned as they are (the standard promotes those as NumPy does)."""
    arrays = [a for a in args if type(a) not in _SCALAR_KINDS]
    if not arrays:
        return args
    kinds = {kind(a.dtype) for a in arrays}
    widest = max(_KIND_ORDER.index(k) for k in kinds)
    if len(kinds) == 1 and all(_KIND_ORDER.index(_SCALAR_KINDS[type(a)]) <= widest
                               for a in args if type(a) in _SCALAR_KINDS):
        return args          # (a Python scalar of the arrays' kind or a narrower one is weak)
    to = np.result_type(*(numpy_dtype(a.dtype) for a in arrays),
                        *(a for a in args if type(a) in _SCALAR_KINDS))
    return tuple(a if type(a) in _SCALAR_KINDS or numpy_dtype(a.dtype) == to
                 else xp.astype(a, dtype_of(xp, to)) for a in args)


def astype(a, dtype):
    """``a`` cast to ``dtype`` (NumPy's or ``a``'s namespace's), in ``a``'s namespace."""
    xp = namespace(a)
    return xp.astype(a, dtype_of(xp, dtype))


def constant_like(value, t):
    """A NumPy constant (a mask, an identity) where the data of ``t`` (a Tensor or an
    array) lives: the same ndarray for NumPy data and graph values, else moved to its
    namespace and device -- for VJP rules that make constants."""
    data = getattr(t, "_data", t)
    if not is_foreign(data):
        return value
    return namespace(data).asarray(value, device=device(data))


def device(a):
    """The device an array lives on (None for NumPy: the host)."""
    if isinstance(a, _PLAIN):
        return None
    import array_api_compat
    return array_api_compat.device(a)


def kind(dtype) -> str:
    """NumPy's one-letter kind of a dtype of any namespace: 'f', 'c', 'i', 'u' or 'b'."""
    k = getattr(dtype, "kind", None)           # NumPy and CuPy dtypes
    if isinstance(k, str):
        return k
    name = str(dtype).rsplit(".", 1)[-1]       # array_api_strict.float32, torch.int64
    for prefix, letter in (("bool", "b"), ("uint", "u"), ("int", "i"), ("float", "f"),
                           ("bfloat", "f"), ("complex", "c")):
        if name.startswith(prefix):
            return letter
    raise TypeError(f"unknown dtype {dtype!r}")


def is_floating(a) -> bool:
    """Whether an array's dtype is real or complex floating point."""
    return kind(a.dtype) in "fc"


def copy(a):
    """A copy of an array, in its namespace and on its device (an ndarray's, or a graph
    value's, by its own .copy())."""
    return namespace(a).asarray(a, copy=True) if is_foreign(a) else a.copy()


def require_numpy(a, who: str):
    """Refuse an array of another namespace where only NumPy arrays can go: compiled code
    (rg.compile, compile_step, the fused update) is generated NumPy code."""
    if type(a) is not np.ndarray and is_foreign(a):
        raise RetrogradError(
            f"{who}: compiled code computes with NumPy only, and this array is "
            f"{name_of(a)}'s (on {device(a)}); use the eager step instead (call the function "
            "without rg.compile; loss.backward() then optimizer.step() in place of "
            "compile_step; rg.train.fit(compile=False)), or move the model back with "
            "model.to(numpy)")


#: counts the moves of module state between namespaces (Module.to): an optimizer whose
#: state was made before a move brings it to its parameters' namespace at its next step
moves = 0


def count_move():
    global moves
    moves += 1


def to_numpy(a) -> np.ndarray:
    """An array as an ndarray on the host (a copy where it lives elsewhere, e.g. a GPU)."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, _PLAIN):
        return np.asarray(a)
    get = getattr(a, "get", None)              # CuPy: device to host
    if callable(get) and type(a).__module__.startswith("cupy"):
        return get()
    try:
        return np.from_dlpack(a, device="cpu")
    except (TypeError, ValueError, RuntimeError, BufferError, AttributeError):
        pass
    xp = namespace(a)
    host = getattr(xp, "Device", None)         # array_api_strict: its CPU device
    if host is not None:
        return np.asarray(xp.asarray(a, device=host()))
    return np.asarray(a)


def namespace_module(xp, who="to_namespace"):
    """``xp`` as an array namespace module: a module (numpy, cupy, array_api_strict...) as it
    is, a name ("cupy") imported; anything else refused by name."""
    if isinstance(xp, str):
        import importlib
        try:
            xp = importlib.import_module(xp)
        except ImportError as e:
            raise RetrogradError(f"{who}: cannot import array namespace {xp!r} ({e})") from None
    if not isinstance(xp, types.ModuleType) or not hasattr(xp, "asarray"):
        raise TypeError(f"{who}: expected an array namespace module (numpy, cupy, "
                        f"array_api_strict, ...) or its name, got {xp!r}")
    return xp


def to_namespace(a, xp, device=None, copy=None):
    """An array (of any library) in namespace ``xp`` (a module: ``numpy``, ``cupy``,
    ``array_api_strict``..., or its name) on ``device`` (default: the namespace's default).
    ``copy=True``: never memory shared with ``a`` (array_api_strict, for one, wraps a
    NumPy array without copying), for a target other than NumPy."""
    xp = namespace_module(xp)
    if xp is np or getattr(xp, "__name__", "") == "numpy":
        return to_numpy(a)
    # (cupy and array-api-compat's wrapper of it, array_api_compat.cupy, are one library)
    if not isinstance(a, _PLAIN) and _name(namespace(a)) != _name(xp):
        a = to_numpy(a)
    kw = {} if copy is None else {"copy": copy}
    return xp.asarray(a, device=device, **kw) if device is not None else xp.asarray(a, **kw)


def size(a) -> int:
    """The number of elements of an array of any namespace."""
    return math.prod(a.shape)


# the identity of each reduction, the value a place no index points at takes
_IDENTITY = {"sum": 0, "prod": 1, "max": -math.inf, "min": math.inf}


def reduce_at(xp, n, lin, values, how="sum"):
    """``values`` (m, ...) reduced by ``how`` ("sum", "prod", "max", "min") into n rows at
    rows ``lin`` (m integers, NumPy's or ``xp``'s; repeats combine, as ``np.add.at``);
    rows no index points at hold the reduction's identity. The standard has no scatter:
    CuPy and PyTorch sums use their own; otherwise the grouping of the indices is
    planned on the host (``lin`` copied there) and the device does gathers and sums."""
    rest, dev = tuple(values.shape[1:]), device(values)
    lib = _name(xp)
    if how == "sum" and lib in ("cupy", "torch") and not isinstance(lin, np.ndarray):
        out = xp.zeros((n,) + rest, dtype=values.dtype, device=dev)
        if lib == "cupy":
            import cupyx
            cupyx.scatter_add(out, lin, values)
            return out
        return out.index_add_(0, xp.astype(lin, xp.int64), values)
    fill = xp.full((1,) + rest, _IDENTITY[how], dtype=values.dtype, device=dev)
    lin = to_numpy(lin).reshape(-1)
    if not lin.size:
        return xp.broadcast_to(fill, (n,) + rest)
    padded = xp.concat([values, fill], axis=0)          # row m: the identity, the padding
    reduce = getattr(xp, how)
    parts, rows = [], []
    for targets, src in _reduce_plan(lin, len(lin)):
        got = xp.take(padded, xp.asarray(src.reshape(-1), device=dev), axis=0)
        parts.append(reduce(xp.reshape(got, src.shape + rest), axis=1, **(
            {"dtype": values.dtype} if how in ("sum", "prod") else {})))
        rows.append(targets)
    hit = np.concatenate(rows)
    where = np.full(n, len(hit), dtype=np.int64)        # (row len(hit): the fill)
    where[hit] = np.arange(len(hit))
    return xp.take(xp.concat(parts + [fill], axis=0), xp.asarray(where, device=dev), axis=0)


def _reduce_plan(lin, m):
    """For the positions ``lin`` points at, grouped by how often (rounded up to a power of
    two, so padding at most doubles the work): (targets, src), src (targets, width) the
    indices of each target's values in index order, padded with ``m`` (the fill row)."""
    order = np.argsort(lin, kind="stable")
    hit = lin[order]
    starts = np.flatnonzero(np.r_[True, hit[1:] != hit[:-1]])
    counts = np.diff(np.r_[starts, len(hit)])
    width = 1 << np.ceil(np.log2(counts)).astype(np.int64)
    for w in np.unique(width):
        sel = np.flatnonzero(width == w)
        k = np.arange(w)
        at = np.minimum(starts[sel, None] + k, len(hit) - 1)
        yield hit[starts[sel]], np.where(k < counts[sel, None], order[at], m)
