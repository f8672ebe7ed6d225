"""Function transforms in the style of JAX: grad, value_and_grad, vjp, jvp,
jacobian, hessian, hvp.

They accept Tensors, ndarrays and Python floats and return Tensors. They nest
to any order: when an argument already requires grad (because an outer
transform is differentiating through this one), the inner gradient is built
with ``create_graph=True`` and so stays differentiable.
"""
from __future__ import annotations

import functools

import numpy as np

from . import autodiff
from .errors import RetrogradError
from .ops import reshape, stack, sum
from .tensor import Tensor, enable_grad, is_grad_enabled

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp"]


def _argnums_tuple(argnums, nargs, who):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise RetrogradError(f"{who}: argnums {argnums} out of range for {nargs} arguments")
    return tuple(n % nargs for n in nums)


def _as_input(x, who):
    """A tensor we can differentiate with respect to.

    A Tensor that already requires grad is used as it is (an outer transform
    may be differentiating through it); anything else becomes a fresh leaf.
    """
    if isinstance(x, Tensor) and x.requires_grad:
        return x
    t = Tensor(x.data if isinstance(x, Tensor) else x)
    if t.dtype.kind not in "fc":
        raise RetrogradError(f"{who}: cannot differentiate with respect to an input of dtype "
                             f"{t.dtype}; pass floats")
    t.requires_grad = True
    return t


def _nested(args) -> bool:
    """Are we inside an outer differentiation (so results must stay differentiable)?"""
    return is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def _prepare(args, argnums, who):
    nums = _argnums_tuple(argnums, len(args), who)
    args = list(args)
    create = _nested(args)
    for n in nums:
        args[n] = _as_input(args[n], who)
    return args, nums, create


def _call(fun, args, has_aux, who):
    with enable_grad():
        res = fun(*args)
    aux = None
    if has_aux:
        if not (isinstance(res, tuple) and len(res) == 2):
            raise RetrogradError(f"{who}(has_aux=True): the function must return (output, aux)")
        res, aux = res
    if not isinstance(res, Tensor):
        res = Tensor(res)
    return res, aux


def _zeros(like):
    return Tensor._make(np.zeros(like.shape, like.dtype))     # also for graph values


def _grads_of(out, inputs, create, seed=None):
    """d out / d inputs, zeros for inputs the output does not depend on."""
    if not out.requires_grad:
        return tuple(_zeros(x) for x in inputs)
    gs = autodiff.grad(out, inputs, grad_outputs=seed, retain_graph=True,
                       create_graph=create, allow_unused=True)
    return tuple(_zeros(x) if g is None else g
                 for g, x in zip(gs, inputs))


def value_and_grad(fun, argnums=0, has_aux=False):
    """``value_and_grad(f)(x) -> (f(x), df/dx)``; with ``has_aux`` f returns (value, aux)
    and the result is ((value, aux), grad), as in JAX."""
    @functools.wraps(fun)
    def wrapped(*args):
        args, nums, create = _prepare(args, argnums, "value_and_grad")
        out, aux = _call(fun, args, has_aux, "value_and_grad")
        if out.size != 1:
            raise RetrogradError(f"grad: the function must return a single number, got shape "
                                 f"{out.shape} (use rg.jacobian or rg.vjp for tensor outputs)")
        gs = _grads_of(out, [args[n] for n in nums], create)
        g = gs[0] if isinstance(argnums, int) else gs
        value = out if create else out.detach()
        return ((value, aux), g) if has_aux else (value, g)
    return wrapped


def grad(fun, argnums=0, has_aux=False):
    """The gradient function of a scalar function: ``grad(f)(x) = df/dx``.

    ``argnums`` picks the arguments (an int gives one gradient, a tuple a tuple);
    ``grad(grad(f))`` is the second derivative.
    """
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def wrapped(*args):
        if has_aux:
            (_, aux), g = vg(*args)
            return g, aux
        return vg(*args)[1]
    return wrapped


def vjp(fun, *primals):
    """``out, vjp_fn = vjp(f, x, y)``; ``vjp_fn(ct)`` gives (ct·∂f/∂x, ct·∂f/∂y)."""
    args, nums, create = _prepare(primals, tuple(range(len(primals))), "vjp")
    out, _ = _call(fun, args, False, "vjp")
    inputs = [args[n] for n in nums]

    def vjp_fn(cotangent):
        ct = cotangent if isinstance(cotangent, Tensor) else Tensor(np.asarray(cotangent, out.dtype))
        if ct.shape != out.shape:
            raise RetrogradError(f"vjp: cotangent has shape {ct.shape}, the output {out.shape}")
        return _grads_of(out, inputs, create or ct.requires_grad, seed=ct)
    return (out if create else out.detach()), vjp_fn


def jvp(fun, primals, tangents):
    """Forward-mode product ``(f(x), J·v)`` by the double-VJP trick: the VJP
    u -> uᵀJ is linear in u, so differentiating <uᵀJ, v> w.r.t. u gives J·v."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise RetrogradError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    args, nums, create = _prepare(primals, tuple(range(len(primals))), "jvp")
    out, _ = _call(fun, args, False, "jvp")
    tans = [t if isinstance(t, Tensor) else Tensor(np.asarray(t, dtype=a.dtype))
            for t, a in zip(tangents, args)]
    for i, (t, a) in enumerate(zip(tans, args)):
        if t.shape != a.shape:
            raise RetrogradError(f"jvp: tangent {i} has shape {t.shape}, primal {a.shape}")
    if not out.requires_grad:
        return out, _zeros(out)
    u = Tensor(np.zeros(out.shape, out.dtype), requires_grad=True)
    with enable_grad():
        gs = _grads_of(out, args, True, seed=u)
        inner = sum(gs[0] * tans[0])
        for g, t in zip(gs[1:], tans[1:]):
            inner = inner + sum(g * t)
    (jv,) = _grads_of(inner, [u], create)
    return (out if create else out.detach()), jv


def jacobian(fun, argnums=0):
    """``jacobian(f)(x)`` has shape ``f(x).shape + x.shape`` (reverse mode, a row at a time)."""
    @functools.wraps(fun)
    def wrapped(*args):
        args, nums, create = _prepare(args, argnums, "jacobian")
        out, _ = _call(fun, args, False, "jacobian")
        inputs = [args[n] for n in nums]
        rows = [[] for _ in inputs]
        flat_n = out.size
        for k in range(flat_n):
            e = np.zeros(out.size, dtype=out.dtype)
            e[k] = 1
            gs = _grads_of(out, inputs, create, seed=Tensor._make(e.reshape(out.shape)))
            for r, g in zip(rows, gs):
                r.append(g)
        jacs = tuple(reshape(stack(r), out.shape + x.shape) if r else
                     Tensor._make(np.zeros(out.shape + x.shape, x.dtype))
                     for r, x in zip(rows, inputs))
        return jacs[0] if isinstance(argnums, int) else jacs
    return wrapped


def hessian(fun, argnums=0):
    """Matrix of second derivatives: the Jacobian of the gradient, shape ``x.shape * 2``."""
    return jacobian(grad(fun, argnums), argnums)


def hvp(fun, primals, tangents):
    """Hessian-vector product H·v of a scalar function, by reverse-over-reverse
    without forming H. ``hvp(f, x, v)`` returns a tensor shaped like x;
    ``hvp(f, (x, y), (vx, vy))`` returns a tuple."""
    single = not isinstance(primals, (tuple, list))
    primals = (primals,) if single else tuple(primals)
    tangents = (tangents,) if single else tuple(tangents)
    if len(primals) != len(tangents):
        raise RetrogradError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    args, nums, create = _prepare(primals, tuple(range(len(primals))), "hvp")
    out, _ = _call(fun, args, False, "hvp")
    if out.size != 1:
        raise RetrogradError(f"hvp: the function must return a single number, got {out.shape}")
    with enable_grad():
        gs = _grads_of(out, args, True)
        inner = None
        for g, v in zip(gs, tangents):
            term = sum(g * v)
            inner = term if inner is None else inner + term
    hv = _grads_of(inner, args, create)
    return hv[0] if single else hv
