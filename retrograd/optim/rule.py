"""An elementwise optimizer's update as one loop body, traced from its own ``_update``.

``trace(opt, group, state, dtype)`` runs ``opt._gradient_array`` and ``opt._update`` once
on stand-ins: each array (the parameter, its gradient, each state array) is one element
``_Elem`` of it, and each number of the group or the step count is a ``_Coef`` that
remembers the Python expression computing it. What comes out is a ``Rule``:

  source    the body of ``kernel(w, g, s0, s1, ..., c)``: a loop over the flat arrays,
            each NumPy operation of the update one scalar operation rounded to the
            arrays' dtype (as NumPy computes it: a Python number becomes the dtype first),
            so the numbers are NumPy's bit for bit;
  coefs     ``coefs(group, step)``: the numbers the loop needs, computed in Python as the
            update computes them (lr / (1 - beta1**t), ...), or None when the trace no
            longer holds (a branch taken on a hyperparameter went the other way, a flag
            changed: trace again).

There is no second copy of any optimizer's math: a rule it cannot trace (a per-tensor
norm, a new state array, a branch on the data) raises ``Untraceable``, and that update
stays the NumPy one (optim.fused). A backend compiles ``source``
(graph.numba_backend: ``update_kernel`` alone, or inside a compiled step's last kernel).
"""
from __future__ import annotations

import math
import operator

import numpy as np

__all__ = ["Rule", "Untraceable", "trace"]


class Untraceable(Exception):
    """The update cannot be one loop of scalar operations."""


class _Trace:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.cast = f"np.{self.dtype.name}"
        self.lines = []           # the loop body
        self.coefs = []           # Python expressions the loop reads, as c[k]
        self.guards = []          # (Python expression, the value it had)
        self.leaves = {}          # Python expression of a group entry -> its local name
        self.loads = {}           # array name -> its element's name
        self.n = 0

    def temp(self, expr):
        self.n += 1
        name = f"t{self.n}"
        self.lines.append(f"{name} = {self.cast}({expr})")
        return name

    def scalar(self, x):
        """The loop's name for a number combined with an array element: cast to the
        dtype first, as NumPy casts a Python scalar."""
        if isinstance(x, _Coef):
            if x.expr not in self.coefs:
                self.coefs.append(x.expr)
            return f"k{self.coefs.index(x.expr)}"
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise Untraceable(f"an array combined with a {type(x).__name__}")
        return f"{self.cast}({float(x)!r})"

    def operand(self, x):
        if isinstance(x, _Elem):
            if x.trace is not self:
                raise Untraceable("an element of another trace")
            return x.name()
        return self.scalar(x)


class _Elem:
    """One element of a flat array (``array`` its name, None for a temporary)."""

    def __init__(self, trace, array=None, value=None, fresh=False):
        self.trace, self.array, self.value, self.fresh = trace, array, value, fresh
        self.shape, self.dtype = ("n",), trace.dtype
        self.stored = False

    def name(self):
        if self.fresh:
            raise Untraceable("a new state array")
        if self.value is None:                 # loaded on first use
            self.value = self.trace.loads.setdefault(self.array, f"a_{self.array}")
        return self.value

    def _op(self, fmt, *others):
        t = self.trace
        return _Elem(t, value=t.temp(fmt.format(*[t.operand(x) for x in (self, *others)])))

    def _inplace(self, new):
        self.value = new.value
        self.stored = self.array is not None
        return self

    __add__ = lambda s, o: s._op("{} + {}", o)
    __sub__ = lambda s, o: s._op("{} - {}", o)
    __mul__ = lambda s, o: s._op("{} * {}", o)
    __truediv__ = lambda s, o: s._op("{} / {}", o)
    __radd__ = lambda s, o: _Elem._flip(s, "{} + {}", o)
    __rsub__ = lambda s, o: _Elem._flip(s, "{} - {}", o)
    __rmul__ = lambda s, o: _Elem._flip(s, "{} * {}", o)
    __rtruediv__ = lambda s, o: _Elem._flip(s, "{} / {}", o)
    __neg__ = lambda s: s._op("-{}")
    __iadd__ = lambda s, o: s._inplace(s + o)
    __isub__ = lambda s, o: s._inplace(s - o)
    __imul__ = lambda s, o: s._inplace(s * o)
    __itruediv__ = lambda s, o: s._inplace(s / o)

    def _flip(self, fmt, other):
        t = self.trace
        return _Elem(t, value=t.temp(fmt.format(t.operand(other), t.operand(self))))

    def __bool__(self):
        raise Untraceable("a branch on an array's values")

    def copy(self):
        return _Elem(self.trace, value=self.name())

    def astype(self, dtype, copy=True):
        if np.dtype(dtype) != self.dtype:
            raise Untraceable("a change of dtype")
        return self.copy() if copy else self

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method != "__call__" or kwargs or ufunc.nout != 1:
            raise Untraceable(f"np.{ufunc.__name__}.{method}")
        t = self.trace
        new = _Elem(t, value=t.temp(f"np.{ufunc.__name__}("
                                    + ", ".join(t.operand(x) for x in inputs) + ")"))
        if out is None:
            return new
        return out[0]._inplace(new)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.zeros_like:            # (a default a setdefault may not use)
            return _Elem(self.trace, fresh=True)
        raise Untraceable(f"np.{func.__name__}")


class _Coef:
    """A number of the group or the step count, as the Python expression computing it.
    A branch on it records a guard: the trace holds while the guard does."""

    def __init__(self, trace, expr, value):
        self.trace, self.expr, self.value = trace, expr, value

    def _num(self, fmt, fn, *xs):
        """The Coef ``fn(*xs)``, written ``fmt`` (NotImplemented with an array element:
        the element's reflected operator takes it)."""
        vals, exprs = [], []
        for x in xs:
            if isinstance(x, _Elem):
                return NotImplemented
            if isinstance(x, _Coef):
                vals.append(x.value)
                exprs.append(x.expr)
            elif type(x) in (int, float, bool):
                vals.append(x)
                exprs.append(repr(x) if math.isfinite(x) else f"float({str(x)!r})")
            else:
                raise Untraceable(f"a number combined with a {type(x).__name__}")
        return _Coef(self.trace, "(" + fmt.format(*exprs) + ")", fn(*vals))

    __add__ = lambda s, o: s._num("{} + {}", operator.add, s, o)
    __sub__ = lambda s, o: s._num("{} - {}", operator.sub, s, o)
    __mul__ = lambda s, o: s._num("{} * {}", operator.mul, s, o)
    __truediv__ = lambda s, o: s._num("{} / {}", operator.truediv, s, o)
    __pow__ = lambda s, o: s._num("{} ** {}", operator.pow, s, o)
    __radd__ = lambda s, o: s._num("{} + {}", operator.add, o, s)
    __rsub__ = lambda s, o: s._num("{} - {}", operator.sub, o, s)
    __rmul__ = lambda s, o: s._num("{} * {}", operator.mul, o, s)
    __rtruediv__ = lambda s, o: s._num("{} / {}", operator.truediv, o, s)
    __rpow__ = lambda s, o: s._num("{} ** {}", operator.pow, o, s)
    __neg__ = lambda s: s._num("-{}", operator.neg, s)

    def _test(self, fmt, fn, *others):
        c = self._num(fmt, fn, self, *others)
        if c is NotImplemented:
            raise Untraceable("a comparison of a number with an array")
        value = bool(c.value)
        self.trace.guards.append((f"bool{c.expr}", value))
        return value

    __bool__ = lambda s: s._test("{}", bool)
    __lt__ = lambda s, o: s._test("{} < {}", operator.lt, o)
    __le__ = lambda s, o: s._test("{} <= {}", operator.le, o)
    __gt__ = lambda s, o: s._test("{} > {}", operator.gt, o)
    __ge__ = lambda s, o: s._test("{} >= {}", operator.ge, o)
    __eq__ = lambda s, o: s._test("{} == {}", operator.eq, o)
    __ne__ = lambda s, o: s._test("{} != {}", operator.ne, o)
    __hash__ = None

    def __float__(self):                     # math.sqrt(c), float(c): not traced
        raise Untraceable("a number through float() (write x ** 0.5 for math.sqrt(x))")


class _Group(dict):
    """The parameter group as the update reads it: numbers become ``_Coef``s, anything
    else (flags) is read as is and guarded."""

    def __init__(self, trace, group):
        super().__init__(group)
        self.trace = trace

    def __getitem__(self, key):
        return self._read(key, f"group[{key!r}]", super().__getitem__(key))

    def get(self, key, default=None):
        return self._read(key, f"group.get({key!r}, {default!r})", super().get(key, default))

    def setdefault(self, key, default=None):
        raise Untraceable("a change of the parameter group")

    def _read(self, key, expr, value):
        if isinstance(value, (tuple, list)):
            return type(value)(self._leaf(f"{expr}[{i}]", v) for i, v in enumerate(value))
        return self._leaf(expr, value)

    def _leaf(self, expr, value):
        t = self.trace
        if type(value) in (int, float):
            t.guards.append((f"(type({expr}) in (int, float))", True))
            return _Coef(t, expr, value)
        if value is None or type(value) in (bool, str):
            t.guards.append((f"({expr} == {value!r})", True))
            return value
        raise Untraceable(f"a group entry of type {type(value).__name__}")


class Rule:
    """A traced update (see the module docstring): ``names`` the state entries the kernel
    takes after w and g, in order; ``source`` the kernel's text; ``coefs`` as above."""

    def __init__(self, tr, names):
        self.names = names
        self.n_coefs = len(tr.coefs)
        arrays = [f"s{i}" for i in range(len(names))]
        stored = [f"{a}[i] = {v}" for a, v in tr.stores]
        body = [f"{v} = {a}[i]" for a, v in tr.loads.items()] + tr.lines + stored
        cast = "".join(f"    k{j} = {tr.cast}(c[{j}])\n" for j in range(len(tr.coefs)))
        self.source = (f"def kernel(w, g, {''.join(a + ', ' for a in arrays)}c):\n{cast}"
                       "    for i in range(w.shape[0]):\n"
                       + "".join(f"        {line}\n" for line in body))
        expect = tuple(v for _, v in tr.guards)
        coefs_src = ("def coefs(group, step):\n    try:\n"
                     f"        if ({''.join(g + ', ' for g, _ in tr.guards)}) != {expect!r}:\n"
                     "            return None\n"
                     f"        return ({''.join(f'float({e}), ' for e in tr.coefs)})\n"
                     "    except (KeyError, IndexError, TypeError, ZeroDivisionError):\n"
                     "        return None\n")
        self.coefs_source = coefs_src
        ns = {}
        exec(compile(coefs_src, "<retrograd optimizer rule>", "exec"), ns)   # our own text
        self.coefs = ns["coefs"]


def trace(opt, group, state, dtype) -> Rule:
    """The Rule of ``opt``'s update for one parameter group and the state entries
    ``state`` has (arrays of ``dtype``; ``state["step"]`` the step count)."""
    tr = _Trace(dtype)
    arrays = [k for k, v in state.items() if k != "step" and isinstance(v, np.ndarray)]
    if len(arrays) != len(state) - 1 or "step" not in state:
        raise Untraceable("state entries that are not arrays")
    elems = {k: _Elem(tr, f"s{i}") for i, k in enumerate(arrays)}
    w, g = _Elem(tr, "w"), _Elem(tr, "g")
    st = {"step": _Coef(tr, "step", state["step"]), **elems}
    with np.errstate(all="ignore"):
        opt._update(w, opt._gradient_array(w, g, _Group(tr, group)), st, _Group(tr, group))
    if set(st) != set(state) or any(st[k] is not e for k, e in elems.items()):
        raise Untraceable("a new or replaced state entry")
    tr.stores = [(e.array, e.value) for e in (w, *elems.values()) if e.stored]
    return Rule(tr, arrays)
