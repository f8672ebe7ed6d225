"""Small float32 matrix products in register tiles, for Numba code (numba_blas.gemm).

OpenBLAS pays for packing and blocking on every call: B2's hidden-layer product, (32, 64)
@ (64, 64), took 12.6 us on one Zen 1 core (21 GFLOP/s), where XLA's own code took ~11.
For products this small the textbook micro-kernel does better: a tile of up to 4 rows x
16 columns of the result stays in eight 8-float vector registers while k runs, each step
one broadcast of a[r, k] and a fused multiply-add with a row of b, and the tile is
stored once at the end: 7.1 us (37 GFLOP/s). It is written as LLVM IR (Numba
intrinsics) because Numba loops do not keep a tile in registers: written out as 64
scalars LLVM left them unvectorised (~70 us), and accumulating into rows of the result
ran at BLAS's speed (12.6-20 us). `python bench/small_products.py` times tiles against
BLAS on B2's products.

Larger products stay BLAS's (``SMALL``): without cache blocking the tiles fall behind
(B1's (500, 784) @ (784, 100): 3.6 ms against OpenBLAS's 1.9 on one thread).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types as nb
from numba.extending import intrinsic

from retrograd.native import numba_cache  # noqa: F401  (before any cached function)

SMALL = 1 << 18        # multiply-adds (m * n * k) up to which a float32 product is tiled
_W = 8                 # floats per vector
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, _W)
_I64 = ir.IntType(64)
_SPLAT = ir.Constant(ir.VectorType(ir.IntType(32), _W), [0] * _W)


def _fmuladd(module):
    """llvm.fmuladd on vectors: one FMA where the CPU has them, a multiply and an add
    where it has not (the same numbers either way up to one rounding)."""
    name = f"llvm.fmuladd.v{_W}f32"
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(_VEC, [_VEC] * 3), name)


def _emit_tile(builder, a, sa0, sa1, b, sb0, c, sc0, k_len, rows, vecs):
    """c[r, :vecs * 8] = sum over k of a[r * sa0 + k * sa1] * b[k * sb0 : ... + vecs * 8]
    for r < rows (pointers to float32, strides in elements), accumulated in registers."""
    fma, vp = _fmuladd(builder.module), _VEC.as_pointer()
    pre, fn = builder.block, builder.function
    loop, done = fn.append_basic_block("tile.k"), fn.append_basic_block("tile.store")
    zero = ir.Constant(_VEC, [0.0] * _W)
    builder.cbranch(builder.icmp_signed(">", k_len, _I64(0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(_I64)
    acc = [builder.phi(_VEC) for _ in range(rows * vecs)]
    b_row = builder.gep(b, [builder.mul(k, sb0)])
    bv = [builder.load(builder.bitcast(builder.gep(b_row, [_I64(_W * j)]), vp), align=4)
          for j in range(vecs)]
    ka, new = builder.mul(k, sa1), []
    for r in range(rows):
        ar = builder.load(builder.gep(a, [builder.add(builder.mul(_I64(r), sa0), ka)]))
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), ar, _I64(0))
        splat = builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), _SPLAT)
        new += [builder.call(fma, [splat, bv[j], acc[r * vecs + j]]) for j in range(vecs)]
    k_next, end = builder.add(k, _I64(1)), builder.block
    k.add_incoming(_I64(0), pre)
    k.add_incoming(k_next, end)
    for phi, v in zip(acc, new):
        phi.add_incoming(zero, pre)
        phi.add_incoming(v, end)
    builder.cbranch(builder.icmp_signed("<", k_next, k_len), loop, done)
    builder.position_at_end(done)
    total = []
    for v in new:                       # (a block's phis come first)
        phi = builder.phi(_VEC)
        phi.add_incoming(zero, pre)
        phi.add_incoming(v, end)
        total.append(phi)
    for r in range(rows):
        c_row = builder.gep(c, [builder.mul(_I64(r), sc0)])
        for j in range(vecs):
            builder.store(total[r * vecs + j],
                          builder.bitcast(builder.gep(c_row, [_I64(_W * j)]), vp), align=4)


def _tile(rows, vecs):
    """The intrinsic ``tile(a, sa0, sa1, b, sb0, c, sc0, k)``: _emit_tile from the float32
    arrays at addresses a, b, c (int64; strides in elements)."""
    @intrinsic
    def tile(typingctx, a, sa0, sa1, b, sb0, c, sc0, k):
        i = nb.int64
        sig = nb.void(i, i, i, i, i, i, i, i)

        def codegen(context, builder, signature, args):
            a_, sa0_, sa1_, b_, sb0_, c_, sc0_, k_ = args
            p = _F32.as_pointer()
            _emit_tile(builder, builder.inttoptr(a_, p), sa0_, sa1_, builder.inttoptr(b_, p),
                       sb0_, builder.inttoptr(c_, p), sc0_, k_, rows, vecs)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_T41, _T42, _T31, _T32, _T21, _T22, _T11, _T12 = (
    _tile(r, v) for r in (4, 3, 2, 1) for v in (1, 2))
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(cache=True, nogil=True, inline="always")
def _rows(rows, vecs, a, sa0, sa1, b, sb0, c, sc0, k):
    """The tile of ``rows`` (1-4) x ``vecs`` (1-2) vectors."""
    if rows == 4:
        if vecs == 2:
            _T42(a, sa0, sa1, b, sb0, c, sc0, k)
        else:
            _T41(a, sa0, sa1, b, sb0, c, sc0, k)
    elif rows == 3:
        if vecs == 2:
            _T32(a, sa0, sa1, b, sb0, c, sc0, k)
        else:
            _T31(a, sa0, sa1, b, sb0, c, sc0, k)
    elif rows == 2:
        if vecs == 2:
            _T22(a, sa0, sa1, b, sb0, c, sc0, k)
        else:
            _T21(a, sa0, sa1, b, sb0, c, sc0, k)
    elif vecs == 2:
        _T12(a, sa0, sa1, b, sb0, c, sc0, k)
    else:
        _T11(a, sa0, sa1, b, sb0, c, sc0, k)


@_jit
def tiles(m, n, k, a, sa0, sa1, b, sb0, c, sc0):
    """c = a @ b, (m, k) @ (k, n) with n a multiple of 8, from the arrays at addresses a,
    b, c (element strides; b's and c's rows contiguous). Typed on integers only: one
    compilation for every layout of the arrays."""
    for i in range(0, m, 4):
        rows = min(4, m - i)
        j = 0
        while j < n:
            vecs = 2 if j + 2 * _W <= n else 1
            _rows(rows, vecs, a + 4 * i * sa0, sa0, sa1, b + 4 * j, sb0,
                  c + 4 * (i * sc0 + j), sc0, k)
            j += vecs * _W


@_jit
def tileable(m, n, k, itemsize, sa0, sa1):
    """Whether a (m, k) @ (k, n) product (m n k > 0) of arrays of ``itemsize`` bytes, a's
    strides (sa0, sa1) bytes, runs in ``tiles``: float32, small enough, whole vectors of
    columns, a's strides whole elements. A last partial vector of columns, through a
    padded copy, made (32, 64) @ (64, 10) slower than BLAS's (4.3 against 2.6 us): such
    products stay BLAS's."""
    return (itemsize == 4 and n % _W == 0 and m * n * k <= SMALL
            and sa0 % 4 == 0 and sa1 % 4 == 0)
