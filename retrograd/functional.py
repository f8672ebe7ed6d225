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


def _as_output(res, who):
    if isinstance(res, (tuple, list)):
        raise RetrogradError(f"{who}: an output inside the returned {type(res).__name__} is "
                             "itself a tuple or list; nested output structures are not supported")
    return res if isinstance(res, Tensor) else Tensor(res)


def _call(fun, args, has_aux, who, structured=False):
    """Run ``fun``; its output is one Tensor or, when ``structured`` (vjp, jvp, jacobian),
    a tuple or list of them -- a structure, as in JAX, never stacked into one array."""
    with enable_grad():
        res = fun(*args)
    aux = None
    if has_aux:
        if not (isinstance(res, tuple) and len(res) == 2):
            raise RetrogradError(f"{who}(has_aux=True): the function must return (output, aux)")
        res, aux = res
    if isinstance(res, (tuple, list)):
        if not structured:
            raise RetrogradError(
                f"{who}: the function returned a {type(res).__name__} of {len(res)}; it must "
                "return a single number (for several outputs use rg.vjp, rg.jvp or rg.jacobian)")
        return type(res)(_as_output(r, who) for r in res), aux
    return _as_output(res, who), aux


def _zeros(like):
    return Tensor._make(np.zeros(like.shape, like.dtype))     # also for graph values


def _grads_of(outs, inputs, create, seeds=None):
    """d outs / d inputs (summed over the outputs, each weighted by its seed), zeros for
    inputs the outputs do not depend on. ``outs``: a Tensor or a list of them."""
    if isinstance(outs, Tensor):
        outs, seeds = [outs], [seeds]
    elif seeds is None:
        seeds = [None] * len(outs)
    live = [(o, s) for o, s in zip(outs, seeds) if o.requires_grad]
    if not live:
        return tuple(_zeros(x) for x in inputs)
    gs = autodiff.grad([o for o, _ in live], inputs, grad_outputs=[s for _, s in live],
                       retain_graph=True, create_graph=create, allow_unused=True)
    return tuple(_zeros(x) if g is None else g
                 for g, x in zip(gs, inputs))


def _flat(outs):
    """(list of the output tensors, a function rebuilding the structure from such a list)."""
    if isinstance(outs, (tuple, list)):
        return list(outs), type(outs)
    return [outs], lambda items: items[0]


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
    """``out, vjp_fn = vjp(f, x, y)``; ``vjp_fn(ct)`` gives (ct·∂f/∂x, ct·∂f/∂y). When f
    returns a tuple or list, ``out`` is one and ``ct`` must be one of the same length."""
    args, nums, create = _prepare(primals, tuple(range(len(primals))), "vjp")
    outs, _ = _call(fun, args, False, "vjp", structured=True)
    flat, rebuild = _flat(outs)
    inputs = [args[n] for n in nums]

    def vjp_fn(cotangent):
        if isinstance(outs, (tuple, list)):
            if not isinstance(cotangent, (tuple, list)) or len(cotangent) != len(flat):
                raise RetrogradError(
                    f"vjp: the function returned a {type(outs).__name__} of {len(flat)} outputs; "
                    "the cotangent must have the same structure (one array per output)")
            cts = list(cotangent)
        else:
            cts = [cotangent]
        cts = [ct if isinstance(ct, Tensor) else Tensor(np.asarray(ct, o.dtype))
               for ct, o in zip(cts, flat)]
        for i, (ct, o) in enumerate(zip(cts, flat)):
            if ct.shape != o.shape:
                which = "" if len(flat) == 1 else f" {i}"
                raise RetrogradError(f"vjp: cotangent{which} has shape {ct.shape}, the output "
                                     f"{o.shape}")
        return _grads_of(flat, inputs, create or any(ct.requires_grad for ct in cts), seeds=cts)
    return rebuild([o if create else o.detach() for o in flat]), vjp_fn


def jvp(fun, primals, tangents):
    """Forward-mode product ``(f(x), J·v)`` by the double-VJP trick: the VJP
    u -> uᵀJ is linear in u, so differentiating <uᵀJ, v> w.r.t. u gives J·v. When f
    returns a tuple or list, both results are one (a tangent per output)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise RetrogradError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    args, nums, create = _prepare(primals, tuple(range(len(primals))), "jvp")
    outs, _ = _call(fun, args, False, "jvp", structured=True)
    flat, rebuild = _flat(outs)
    tans = [t if isinstance(t, Tensor) else Tensor(np.asarray(t, dtype=a.dtype))
            for t, a in zip(tangents, args)]
    for i, (t, a) in enumerate(zip(tans, args)):
        if t.shape != a.shape:
            raise RetrogradError(f"jvp: tangent {i} has shape {t.shape}, primal {a.shape}")
    us = [Tensor(np.zeros(o.shape, o.dtype), requires_grad=True) for o in flat]
    with enable_grad():
        gs = _grads_of(flat, args, True, seeds=us)
        inner = sum(gs[0] * tans[0])
        for g, t in zip(gs[1:], tans[1:]):
            inner = inner + sum(g * t)
    jvs = _grads_of(inner, us, create)
    return rebuild([o if create else o.detach() for o in flat]), rebuild(list(jvs))


def _jacobian_of(out, inputs, create):
    rows = [[] for _ in inputs]
    for k in range(out.size):
        e = np.zeros(out.size, dtype=out.dtype)
        e[k] = 1
        gs = _grads_of(out, inputs, create, seeds=Tensor._make(e.reshape(out.shape)))
        for r, g in zip(rows, gs):
            r.append(g)
    return tuple(reshape(stack(r), out.shape + x.shape) if r else
                 Tensor._make(np.zeros(out.shape + x.shape, x.dtype))
                 for r, x in zip(rows, inputs))


def jacobian(fun, argnums=0):
    """``jacobian(f)(x)`` has shape ``f(x).shape + x.shape`` (reverse mode, a row at a time).
    When f returns a tuple or list, the result is one: a Jacobian per output (as JAX's
    jacrev; with a tuple ``argnums``, a tuple per output)."""
    @functools.wraps(fun)
    def wrapped(*args):
        args, nums, create = _prepare(args, argnums, "jacobian")
        outs, _ = _call(fun, args, False, "jacobian", structured=True)
        flat, rebuild = _flat(outs)
        inputs = [args[n] for n in nums]
        jacs = [_jacobian_of(o, inputs, create) for o in flat]
        return rebuild([j[0] if isinstance(argnums, int) else j for j in jacs])
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
