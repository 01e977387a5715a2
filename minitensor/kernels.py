"""Numba kernels of the compiled training path (``compile(jit_compile=True)``).

One call of :func:`train_epoch` runs every step of an epoch of a Sequential stack of Dense
(and Dropout) layers: gather the batch, forward pass, loss and weight penalties, loss tracker
and accuracy metrics, backward pass, optimizer update, with no Python in between.
:mod:`minitensor.compiled` decides whether a model is supported and lays out the arrays; this
module only computes. It is imported when a plan is built, never by ``import minitensor``
(importing Numba takes about 0.2 s, and Numba then imports SciPy's BLAS wrappers, about
0.2 s more; compiling these kernels takes 10-12 s). The kernels are cached on disk
(``cache=True``): a later process loads them (about 0.2 s) instead of compiling them.

Layout: a layer's inputs, pre-activations, outputs and gradients live in one float32
workspace, feature-major ((width, batch), C-contiguous), so the loops over the batch are the
long, contiguous, vectorised ones; the parameters and their gradients are the model's flat
buffers (each kernel row-major (in, out), as Keras).

Numerics: every value is float32 and every formula is the reference path's (the autograd
graph of :mod:`minitensor.ops`, :mod:`minitensor.losses` and :mod:`minitensor.optimizers`),
operation by operation:

* sums that NumPy computes with its pairwise algorithm (losses over a batch, penalties
  ``sum(w*w)``, per-row sums over classes, metric totals) use the same algorithm
  (:func:`pairwise_sum`), so they round identically; the column sums of a bias gradient are
  sequential, as NumPy's ``sum(axis=0)``;
* matrix products go through BLAS ``sgemm`` (``np.dot`` inside Numba, on contiguous or
  transposed-contiguous float32 arrays: no copies) or, for tiny layers and batch size 1,
  through plain loops; their summation order differs from the reference's BLAS calls, and
  ``exp``/``log1p``/``tanh`` come from the C library rather than NumPy's SIMD versions (an
  ulp apart at times), which is why the two paths agree to float32 round-off rather than bit
  for bit;
* ``error_model='numpy'`` (no Python division checks, so loops vectorise) and no fast-math
  flags (IEEE results, no fused multiply-add contraction), except ``reassoc`` alone on the dot
  products of the weight gradients (:func:`_dot_rows`) so that they vectorise, as BLAS's do.

Subnormals: the optimizer updates flush to zero, as TensorFlow's CPU kernels do. A product
whose result would be below the smallest normal float32 (1.18e-38) is 0, and is never
computed (its operand is zeroed first, see :func:`_threshold`); a new slot value below it is
stored as 0. Float32 arithmetic that produces subnormals is 20-30 times slower on x86
(measured here: an Adam step over 670k parameters with 200k subnormal moments, 5.2 ms plain
vs 0.9 ms flushed), and Adam's moments of weights whose gradient stays 0 decay into them.
Parity: a flushed product is one that the reference path (NumPy, which does not flush) keeps
as a subnormal. The weights are unaffected in practice (a flushed update term is below 1e-30);
slot values that the reference path lets decay through the subnormals stay at their last
normal value or become 0 here, as in Keras (Adam's ``m`` sticks near 1e-37 once
``(g - m)*(1 - beta_1)`` is subnormal), and a subnormal slot value loaded from a state
becomes 0 after one step.

Speed notes (2-core x86 development machine, medians of 5-7 rounds of ``fit`` epochs, old and
new code run alternately; us per step, the benchmarks' models): before this layout (array views
per step, functions inlined at Numba's IR level, the parameters and slots copied before every
update) A 7.2, C 11.3, D 2.6, B 360, L 3630; after it A 5.3-5.8, C 8.7-9.3, D 1.15-1.2, B 295,
L 3200. First compiled epoch with an empty cache, model A: 19.9-21.7 s before, 11.9-12.3 s after,
then 11.4 s (12.5 s for the previous code in the same alternating runs; 10.1-10.9 s on a quieter
machine) once the BLAS calls were emitted in place and `_update` inlined: 37 Numba compilations,
of which `train_epoch`'s own is about 3.5 s, and about half of the total is LLVM (optimising and
generating the machine code of each function together with everything it calls, at every level);
from the cache 0.17-0.19 s once Numba is imported (0.4-0.5 s with the import, as the benchmarks'
cold-start row measures it). What did it: indices cast to unsigned (a signed index made an Adam
update over 95k values 330 us instead of 43 us: no vectorisation); no array views and borrowed
arrays (perf had Numba's atomic reference counting at 57% of a batch-1 step, then ~30% with offsets
but reference-counted arguments); a second set of weights and slots instead of a copy per step;
each layer's update right after its backward pass. One `python -m benchmarks` run with tf.keras
(--repeats 3): A 319x, C 221x, D 874x, B 8.7x, L 1.70x at 42% of the GEMM peak; on A the kernel
takes 155 us of a 222 us epoch, the rest is Python around it. See docs/internals.md.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["train_epoch", "pairwise_sum", "HAVE_BLAS"]

_JIT = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)
# No function is inlined at Numba's IR level (inline="always") but `_update`, a dispatch with one
# caller (its inlining saves compiling and optimising every optimizer's code a second time, about
# 0.5 s on first use; inlining the layers' functions made the first epoch 2-3 s slower): each is
# compiled once, and LLVM inlines what pays. The step creates no array views outside the BLAS calls (see the
# layers' section), so Numba's reference counting is out of the per-step path.

#: ``np.dot`` inside Numba calls BLAS through SciPy; without SciPy every layer uses the loops.
HAVE_BLAS = importlib.util.find_spec("scipy") is not None
if HAVE_BLAS:
    import scipy.linalg.cython_blas  # noqa: F401 (Numba would load it at the first kernel; minitensor.threads
    # must see this BLAS library before training starts, to hold it to one thread where that is faster)

# ---------------------------------------------------------------------------- codes
ACT_LINEAR = 0
ACT_RELU = 1
ACT_SIGMOID = 2
ACT_TANH = 3
ACT_SOFTMAX = 4

LOSS_BCE = 0
LOSS_CCE = 1
LOSS_SCCE = 2
LOSS_MSE = 3

MET_BINARY = 1
MET_CATEGORICAL = 2
MET_SPARSE = 3

OPT_SGD = 0
OPT_RMSPROP = 1
OPT_ADAM = 2
OPT_ADAGRAD = 3

# columns of the per-layer table `lmeta` (int64, one row per Dense layer)
L_IN = 0  # input width K
L_OUT = 1  # output width J
L_WOFF = 2  # kernel offset in the flat parameters (K*J values, row-major (K, J))
L_BOFF = 3  # bias offset, or -1 without bias
L_ACT = 4  # activation code
L_BLAS = 5  # 1: matrix products through BLAS
L_A = 6  # workspace offset of the layer's input, feature-major (K, batch)
L_Z = 7  # workspace offset of its pre-activation (J, batch)
L_H = 8  # workspace offset of its activation output (J, batch; == L_Z for linear)
L_NCOLS = 9

# columns of `lreg` (float32, one row per Dense layer): penalty factors, 0 = none
R_KL1 = 0
R_KL2 = 1
R_BL1 = 2
R_BL2 = 3

# columns of the dropout table `dmeta` (int64, one row per Dropout layer, in layer order)
D_AFTER = 0  # index of the Dense layer whose output it follows (-1: the model's input)
D_WIDTH = 1
D_MASK = 2  # offset of its keep-mask (epoch rows x width, bool, sample-major) in `masks`
D_SRC = 3  # workspace offset it reads (width, batch)
D_DST = 4  # workspace offset it writes (width, batch)

# offsets `goff` (int64) of the shared workspace buffers
G_XB = 0  # gathered inputs: feature-major (d0, batch), or sample-major (batch, d0) for a BLAS first layer
G_YB = 1  # gathered targets for the loss (batch, k)
G_YM = 2  # gathered targets for the metrics (batch, k)
G_SW = 3  # gathered sample weights (batch,)
G_G1 = 4  # gradient buffer (widest, batch)
G_G2 = 5  # gradient buffer (widest, batch)
G_V = 6  # per-sample values (batch,)
G_R = 7  # one row of scratch (widest)
G_NCOLS = 8

# entries of the optimizer's `hyper` (float32) and `flags` (int64)
# (each entry is one hyperparameter, named as in the optimizer's config; unused ones stay 0)
H_LR = 0  # learning_rate
H_MOMENTUM = 1  # SGD, RMSprop: momentum
H_RHO = 2  # RMSprop: rho
H_ONE_MINUS_RHO = 3  # RMSprop: 1 - rho
H_BETA_1 = 4  # Adam: beta_1
H_BETA_2 = 5  # Adam: beta_2
H_ONE_MINUS_BETA_1 = 6  # Adam: 1 - beta_1
H_ONE_MINUS_BETA_2 = 7  # Adam: 1 - beta_2
H_EPS = 8  # epsilon
H_WD = 9  # weight_decay
H_CLIP = 10  # clipvalue
H_N = 11

F_NESTEROV = 0
F_CENTERED = 1
F_AMSGRAD = 2
F_MOMENTUM = 3  # SGD / RMSprop use a momentum slot
F_WD = 4
F_CLIP = 5
F_N = 6

TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32, as a float64
TINY32 = np.float32(TINY)


# ---------------------------------------------------------------------------- helpers
@intrinsic
def _borrowed(typingctx, array):
    """``array`` without its reference count: the same data, shape and strides, no owner.

    Numba counts references of every array it passes to a compiled function, with atomic
    operations (measured with perf: about a third of a batch-1 step when the epoch's arrays
    were passed to the per-layer functions as they are). ``train_epoch`` borrows its arrays
    once; the caller's references keep them alive until it returns.
    """
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(array)(context, builder, value=args[0])
        dst = context.make_array(array)(context, builder)
        for name in ("data", "shape", "strides", "itemsize", "nitems"):
            setattr(dst, name, getattr(src, name))
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        return dst._getvalue()

    return array(array), codegen


@intrinsic
def _matrix(typingctx, flat, offset, rows, cols):
    """The (rows, cols) C-contiguous matrix at ``flat[offset:]``, borrowed (no reference count).

    What ``flat[offset: offset + rows*cols].reshape((rows, cols))`` gives, without the slice
    and the reshape call (made for every BLAS operand of every step).
    """
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    matrix = types.Array(flat.dtype, 2, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import populate_array

        src = context.make_array(flat)(context, builder, value=args[0])
        intp = context.get_value_type(types.intp)
        off, nrows, ncols = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:]))
        itemsize = intp(context.get_abi_sizeof(context.get_data_type(flat.dtype)))
        dst = context.make_array(matrix)(context, builder)
        populate_array(dst, data=builder.gep(src.data, [off]), shape=cgutils.pack_array(builder, [nrows, ncols]),
                       strides=cgutils.pack_array(builder, [builder.mul(ncols, itemsize), itemsize]),
                       itemsize=itemsize, meminfo=None)
        return dst._getvalue()

    return matrix(flat, offset, rows, cols), codegen


@njit(**_JIT)
def _threshold(b):
    """The float32 ``t`` such that ``|a| < t`` exactly when ``a*b`` would be subnormal (within an ulp).

    Multiplying by ``b`` only operands with ``|a| >= t`` never produces a subnormal result, so
    the products below run at full speed; the operands below ``t`` give 0, as a flush-to-zero
    multiply would. (A product within a millionth of the smallest normal may also be flushed.)
    """
    bb = abs(np.float64(b))
    if bb == 0.0:
        return np.float32(np.inf)
    return np.float32(TINY / bb * (1.0 + 2.0**-20))


@njit(**_JIT)
def _fz(a, threshold):
    """``a``, or 0 when ``|a| < threshold`` (NaN and infinities pass)."""
    if abs(a) < threshold:
        return np.float32(0.0)
    return a


@njit(**_JIT)
def _ftz(v):
    """``v`` (float32), or 0 when it is subnormal."""
    if abs(v) < TINY32:
        return np.float32(0.0)
    return v


@njit(**_JIT)
def _block_sum(a, start, n):
    """NumPy's pairwise sum of ``a[start:start+n]`` for n <= 128 (one block: 8 interleaved partial sums).

    From ``pairwise_sum`` in numpy/_core/src/umath/loops_utils.h.src.
    """
    if n < 8:
        res = np.float32(0.0)
        for i in range(start, start + n):
            res += a[i]
        return res
    r0 = a[start]
    r1 = a[start + 1]
    r2 = a[start + 2]
    r3 = a[start + 3]
    r4 = a[start + 4]
    r5 = a[start + 5]
    r6 = a[start + 6]
    r7 = a[start + 7]
    whole = n - n % 8
    for i in range(start + 8, start + whole, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(start + whole, start + n):
        res += a[i]
    return res


@njit(**_JIT)
def _term(v, mode):
    if mode == 1:
        return v * v
    if mode == 2:
        return abs(v)
    return v


@njit(**_JIT)
def _block_sum_mode(a, start, n, mode):
    """:func:`_block_sum` of ``a*a`` (mode 1) or ``|a|`` (mode 2), or of ``a`` (mode 0)."""
    if mode == 0:
        return _block_sum(a, start, n)
    if n < 8:
        res = np.float32(0.0)
        for i in range(start, start + n):
            res += _term(a[i], mode)
        return res
    r0 = _term(a[start], mode)
    r1 = _term(a[start + 1], mode)
    r2 = _term(a[start + 2], mode)
    r3 = _term(a[start + 3], mode)
    r4 = _term(a[start + 4], mode)
    r5 = _term(a[start + 5], mode)
    r6 = _term(a[start + 6], mode)
    r7 = _term(a[start + 7], mode)
    whole = n - n % 8
    for i in range(start + 8, start + whole, 8):
        r0 += _term(a[i], mode)
        r1 += _term(a[i + 1], mode)
        r2 += _term(a[i + 2], mode)
        r3 += _term(a[i + 3], mode)
        r4 += _term(a[i + 4], mode)
        r5 += _term(a[i + 5], mode)
        r6 += _term(a[i + 6], mode)
        r7 += _term(a[i + 7], mode)
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(start + whole, start + n):
        res += _term(a[i], mode)
    return res


@njit(**_JIT)
def _pairwise_large(a, start, n, mode):
    # NumPy recurses: n2 = n/2 rounded down to a multiple of 8, (left half) + (right half),
    # blocks of at most 128 summed by _block_sum. Iteratively, with an explicit stack.
    stack_s = np.empty(64, np.int64)
    stack_n = np.empty(64, np.int64)
    stack_state = np.empty(64, np.int64)  # 0: left half pending, 1: right half pending
    partial = np.empty(64, np.float32)
    top = 0
    stack_s[0] = start
    stack_n[0] = n
    stack_state[0] = 0
    result = np.float32(0.0)
    while top >= 0:
        s = stack_s[top]
        m = stack_n[top]
        if m <= 128:
            value = _block_sum_mode(a, s, m, mode)
            top -= 1
            while True:  # hand the value up
                if top < 0:
                    result = value
                    break
                if stack_state[top] == 0:  # it was the left half: keep it, expand the right half
                    partial[top] = value
                    stack_state[top] = 1
                    n2 = stack_n[top] // 2
                    n2 -= n2 % 8
                    ps = stack_s[top]
                    pm = stack_n[top]
                    top += 1
                    stack_s[top] = ps + n2
                    stack_n[top] = pm - n2
                    stack_state[top] = 0
                    break
                value = partial[top] + value  # it was the right half: combine, go up
                top -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        top += 1
        stack_s[top] = s
        stack_n[top] = n2
        stack_state[top] = 0
    return result


@njit(**_JIT)
def pairwise_sum(a, start, n):
    """float32 sum of ``a[start:start+n]`` in NumPy's pairwise order (bit-identical to ``.sum()``)."""
    if n <= 128:
        return _block_sum(a, start, n)
    return _pairwise_large(a, start, n, np.int64(0))


@njit(**_JIT)
def pairwise_sum_mode(a, start, n, mode):
    """NumPy's ``(a*a).sum()`` (mode 1) or ``abs(a).sum()`` (mode 2) over ``a[start:start+n]``, bit for bit."""
    if n <= 128:
        return _block_sum_mode(a, start, n, mode)
    return _pairwise_large(a, start, n, mode)


if HAVE_BLAS:

    @intrinsic
    def _gemm(typingctx, a, b, out):
        """``np.dot(a, b, out)`` for C- or F-contiguous float32 matrices with matching shapes.

        The same BLAS calls as Numba's own ``np.dot`` (``sgemm``, or ``sgemv``/``sdot`` when an
        operand is a vector), emitted in place: Numba's version compiles a function for each
        combination of layouts (about 0.25 s each, four of them, on first use). The shapes are
        not checked: the callers build them.
        """
        from numba.np import linalg

        arrays = (a, b, out)
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == types.float32 and t.layout in "CF"
                   for t in arrays) or out.layout != "C":
            return None

        def codegen(context, builder, signature, args):
            # the branches of numba.np.linalg.dot_3_mm, without its argument checks
            linalg.ensure_blas()
            x, y, res = (context.make_array(t)(context, builder, v) for t, v in zip(arrays, args))
            x_shapes = cgutils.unpack_tuple(builder, x.shape)
            y_shapes = cgutils.unpack_tuple(builder, y.shape)
            out_shapes = cgutils.unpack_tuple(builder, res.shape)
            m, k = x_shapes
            n = y_shapes[1]
            one = context.get_constant(types.intp, 1)
            is_left_vec = builder.icmp_signed("==", m, one)
            is_right_vec = builder.icmp_signed("==", n, one)
            with builder.if_else(is_right_vec) as (r_vec, r_mat):
                with r_vec:
                    with builder.if_else(is_left_vec) as (v_v, m_v):
                        with v_v:
                            linalg.call_xxdot(context, builder, False, types.float32, k, x.data, y.data, res.data)
                        with m_v:
                            linalg.call_xxgemv(context, builder, a.layout == out.layout, a, x_shapes, x.data,
                                               y.data, res.data)
                with r_mat:
                    with builder.if_else(is_left_vec) as (v_m, m_m):
                        with v_m:
                            linalg.call_xxgemv(context, builder, b.layout != out.layout, b, y_shapes, y.data,
                                               x.data, res.data)
                        with m_m:
                            linalg.call_xxgemm(context, builder, a, x_shapes, x.data, b, y_shapes, y.data,
                                               out, out_shapes, res.data)
            return context.get_dummy_value()

        return types.none(a, b, out), codegen

else:  # pragma: no cover - SciPy is installed with the test extras

    @njit(**_JIT)
    def _gemm(a, b, out):
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = 0
            for k in range(a.shape[1]):
                av = a[i, k]
                for j in range(out.shape[1]):
                    out[i, j] += av * b[k, j]


# ---------------------------------------------------------------------------- layers
# Activations and their gradients are stored feature-major: (width, batch) C-contiguous in the
# flat workspace `ws`, so the innermost loops of the small matrix products run over the batch
# (long, contiguous, vectorised) rather than over a layer's few units. Everything is indexed by
# offsets into the flat arrays (`ws`, `params`, `grads`): an array view made per step would
# cost Numba's atomic reference counting and a reshape call each time. Only the BLAS calls get
# views, made where they are called. Indices computed from a run-time offset are cast with
# `np.uint64` (unsigned: see UPDATE_BLOCK's comment), or the loops would not vectorise.
@njit(cache=True, error_model="numpy", fastmath={"reassoc"}, nogil=True)
def _dot_rows(a, ia, b, ib, n):
    """``a[ia:ia+n] . b[ib:ib+n]`` for two flat float32 arrays (the weight gradient's dot products).

    Compiled with one fast-math flag: ``reassoc`` alone, so LLVM may split the sum into vector
    lanes (as BLAS does); every operation stays an IEEE float32 multiply or add (no contraction
    into fused multiply-adds, no finite-math assumptions).
    """
    res = np.float32(0.0)
    for t in range(n):
        res += a[np.uint64(ia + t)] * b[np.uint64(ib + t)]
    return res


@njit(**_JIT)
def _dense_forward(ws, a_off, a_rows, params, woff, boff, z_off, kk, jj, bc, blas):
    """``z = a @ w (+ bias)`` feature-major: a (K, B) at ``ws[a_off]``, w (K, J) at ``params[woff]``, z (J, B).

    ``a_rows``: ``a`` is stored sample-major, (B, K) (the gathered inputs of a first layer that
    multiplies through BLAS). Each output sums its K products in order (k = 0, 1, ...), then
    adds the bias, as the reference's ``x @ kernel + bias`` up to BLAS's summation order.
    """
    if blas:
        w = _matrix(params, woff, kk, jj)
        zt = _matrix(ws, z_off, jj, bc)
        if a_rows:
            _gemm(w.T, _matrix(ws, a_off, bc, kk).T, zt)
        else:
            _gemm(w.T, _matrix(ws, a_off, kk, bc), zt)
    elif bc == 1:
        # a matrix-vector product: z (J, 1) is contiguous over j
        for j in range(jj):
            ws[np.uint64(z_off + j)] = 0
        for k in range(kk):
            av = ws[np.uint64(a_off + k)]
            wk = woff + k * jj
            for j in range(jj):
                ws[np.uint64(z_off + j)] += av * params[np.uint64(wk + j)]
    else:
        # four outputs at a time share each row of `a` (fewer, longer passes over the batch)
        j = 0
        while j + 4 <= jj:
            z0 = z_off + j * bc
            for b in range(4 * bc):
                ws[np.uint64(z0 + b)] = 0
            for k in range(kk):
                wk = woff + k * jj + j
                w0 = params[np.uint64(wk)]
                w1 = params[np.uint64(wk + 1)]
                w2 = params[np.uint64(wk + 2)]
                w3 = params[np.uint64(wk + 3)]
                ak = a_off + k * bc
                for b in range(bc):
                    av = ws[np.uint64(ak + b)]
                    ws[np.uint64(z0 + b)] += w0 * av
                    ws[np.uint64(z0 + bc + b)] += w1 * av
                    ws[np.uint64(z0 + 2 * bc + b)] += w2 * av
                    ws[np.uint64(z0 + 3 * bc + b)] += w3 * av
            j += 4
        while j < jj:
            z0 = z_off + j * bc
            for b in range(bc):
                ws[np.uint64(z0 + b)] = 0
            for k in range(kk):
                wv = params[np.uint64(woff + k * jj + j)]
                ak = a_off + k * bc
                for b in range(bc):
                    ws[np.uint64(z0 + b)] += wv * ws[np.uint64(ak + b)]
            j += 1
    if boff >= 0:
        for j in range(jj):
            bv = params[np.uint64(boff + j)]
            z0 = z_off + j * bc
            for b in range(bc):
                ws[np.uint64(z0 + b)] += bv


@njit(**_JIT)
def _activation_forward(ws, z_off, h_off, jj, bc, act, row):
    """``h = act(z)`` for (J, B) blocks of ``ws``; ``row`` is the offset of a scratch row."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    n = jj * bc
    if act == ACT_RELU:
        for i in range(n):
            v = ws[np.uint64(z_off + i)]
            ws[np.uint64(h_off + i)] = v if not v < zero else zero  # np.maximum(v, 0), NaN kept
    elif act == ACT_SIGMOID:
        for i in range(n):
            v = ws[np.uint64(z_off + i)]
            e = np.exp(-abs(v))
            ws[np.uint64(h_off + i)] = one / (one + e) if v >= zero else e / (one + e)
    elif act == ACT_TANH:
        for i in range(n):
            ws[np.uint64(h_off + i)] = np.tanh(ws[np.uint64(z_off + i)])
    elif act == ACT_SOFTMAX:
        for b in range(bc):
            shift = ws[np.uint64(z_off + b)]
            for j in range(1, jj):
                if ws[np.uint64(z_off + j * bc + b)] > shift:
                    shift = ws[np.uint64(z_off + j * bc + b)]
            for j in range(jj):
                ws[np.uint64(row + j)] = np.exp(ws[np.uint64(z_off + j * bc + b)] - shift)
            total = pairwise_sum(ws, row, jj)
            for j in range(jj):
                ws[np.uint64(h_off + j * bc + b)] = ws[np.uint64(row + j)] / total


@njit(**_JIT)
def _activation_backward(ws, g_off, h_off, jj, bc, act, row):
    """The (J, B) block ``g`` (dL/dh) becomes dL/dz in place; ``h`` is the activation's output."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    n = jj * bc
    if act == ACT_RELU:
        for i in range(n):
            ws[np.uint64(g_off + i)] = ws[np.uint64(g_off + i)] * (one if ws[np.uint64(h_off + i)] > zero else zero)
    elif act == ACT_SIGMOID:
        for i in range(n):
            o = ws[np.uint64(h_off + i)]
            ws[np.uint64(g_off + i)] = ws[np.uint64(g_off + i)] * o * (one - o)
    elif act == ACT_TANH:
        for i in range(n):
            o = ws[np.uint64(h_off + i)]
            ws[np.uint64(g_off + i)] = ws[np.uint64(g_off + i)] * (one - o * o)
    elif act == ACT_SOFTMAX:
        for b in range(bc):
            # inner = sum(g*out) over the classes (pairwise, as NumPy); then out * (g - inner)
            for j in range(jj):
                ws[np.uint64(row + j)] = ws[np.uint64(g_off + j * bc + b)] * ws[np.uint64(h_off + j * bc + b)]
            inner = pairwise_sum(ws, row, jj)
            for j in range(jj):
                i = j * bc + b
                ws[np.uint64(g_off + i)] = ws[np.uint64(h_off + i)] * (ws[np.uint64(g_off + i)] - inner)


@njit(**_JIT)
def _dense_backward(ws, a_off, a_rows, params, grads, woff, boff, gz_off, ga_off, kk, jj, bc, need_ga, blas):
    """From gz = dL/dz (J, B) at ``ws[gz_off]``: gw = a.T @ gz (K, J), gb = sums of gz over the batch,
    and (``need_ga``) ga = (gz @ w.T).T (K, B) at ``ws[ga_off]``."""
    if blas:
        gzt = _matrix(ws, gz_off, jj, bc)
        gw = _matrix(grads, woff, kk, jj)
        if a_rows:
            _gemm(_matrix(ws, a_off, bc, kk).T, gzt.T, gw)
        else:
            _gemm(_matrix(ws, a_off, kk, bc), gzt.T, gw)
    elif bc == 1:
        for k in range(kk):
            av = ws[np.uint64(a_off + k)]
            gk = woff + k * jj
            for j in range(jj):
                grads[np.uint64(gk + j)] = av * ws[np.uint64(gz_off + j)]
    else:
        for k in range(kk):
            for j in range(jj):
                grads[np.uint64(woff + k * jj + j)] = _dot_rows(ws, a_off + k * bc, ws, gz_off + j * bc, bc)
    if boff >= 0:
        if jj == 1:
            # NumPy sums a (B, 1) column as one contiguous vector: pairwise
            grads[np.uint64(boff)] = pairwise_sum(ws, gz_off, bc)
        else:
            # NumPy's sum(axis=0) of a (B, J) array: row after row
            for j in range(jj):
                grads[np.uint64(boff + j)] = ws[np.uint64(gz_off + j * bc)]
            for b in range(1, bc):
                for j in range(jj):
                    grads[np.uint64(boff + j)] += ws[np.uint64(gz_off + j * bc + b)]
    if need_ga:
        if blas:
            _gemm(_matrix(params, woff, kk, jj), _matrix(ws, gz_off, jj, bc), _matrix(ws, ga_off, kk, bc))
        elif bc == 1:
            for k in range(kk):
                ws[np.uint64(ga_off + k)] = _dot_rows(params, woff + k * jj, ws, gz_off, jj)
        else:
            k = 0
            while k + 4 <= kk:
                g0 = ga_off + k * bc
                for b in range(4 * bc):
                    ws[np.uint64(g0 + b)] = 0
                for j in range(jj):
                    wk = woff + k * jj + j
                    w0 = params[np.uint64(wk)]
                    w1 = params[np.uint64(wk + jj)]
                    w2 = params[np.uint64(wk + 2 * jj)]
                    w3 = params[np.uint64(wk + 3 * jj)]
                    gj = gz_off + j * bc
                    for b in range(bc):
                        gv = ws[np.uint64(gj + b)]
                        ws[np.uint64(g0 + b)] += w0 * gv
                        ws[np.uint64(g0 + bc + b)] += w1 * gv
                        ws[np.uint64(g0 + 2 * bc + b)] += w2 * gv
                        ws[np.uint64(g0 + 3 * bc + b)] += w3 * gv
                k += 4
            while k < kk:
                g0 = ga_off + k * bc
                for b in range(bc):
                    ws[np.uint64(g0 + b)] = 0
                for j in range(jj):
                    wv = params[np.uint64(woff + k * jj + j)]
                    gj = gz_off + j * bc
                    for b in range(bc):
                        ws[np.uint64(g0 + b)] += wv * ws[np.uint64(gj + b)]
                k += 1


@njit(**_JIT)
def _penalty(params, off, n, l1, l2):
    """Keras's penalty ``l1*sum|w| (+) l2*sum(w*w)`` at the current weights (0 when both are 0)."""
    pen = np.float32(0.0)
    if l1 != 0:
        pen = l1 * pairwise_sum_mode(params, off, n, np.int64(2))  # (np.int64: one compiled variant, not one per literal)
        if l2 != 0:
            pen = pen + l2 * pairwise_sum_mode(params, off, n, np.int64(1))
    elif l2 != 0:
        pen = l2 * pairwise_sum_mode(params, off, n, np.int64(1))
    return pen


@njit(**_JIT)
def _penalty_grad(params, grads, off, n, l1, l2):
    """Add the penalty's gradient ``l1*sign(w) + 2*l2*w`` (as ``l2*w + l2*w``) to ``grads``."""
    zero = np.float32(0.0)
    one = np.float32(1.0)
    if l2 != 0:
        for i in range(off, off + n):
            t = l2 * params[np.uint64(i)]
            grads[np.uint64(i)] = (t + t) + grads[np.uint64(i)]
    if l1 != 0:
        for i in range(off, off + n):
            w = params[np.uint64(i)]
            s = one if w > zero else (-one if w < zero else (zero if w == zero else w))
            grads[np.uint64(i)] = l1 * s + grads[np.uint64(i)]


# ---------------------------------------------------------------------------- loss
# The formulas of minitensor/losses.py (binary_crossentropy / categorical_crossentropy /
# sparse_categorical_crossentropy with from_logits, mean_squared_error) and of their gradients
# in minitensor/ops.py, per sample.
@njit(**_JIT)
def _loss_forward_backward(ws, u_off, yb_off, labels, sw_off, has_sw, loss_kind, g_off, v_off, row, fused, h_off,
                           kk, bc):
    """Per-sample losses of ``u`` (k, B) into ``vals``, the batch loss, and dL/du into ``g`` (k, B).

    All are blocks of ``ws`` at the given offsets; ``yb`` (the targets) is (B, k), ``vals`` and
    ``sw`` (the sample weights) are (B,). With ``fused`` (a sigmoid output with binary
    cross-entropy, a softmax output with a categorical one) the output activation, which the
    loss computes anyway from the logits with the same formula, is also written to ``h``.

    ``u`` holds logits for the cross-entropies (recovered from a sigmoid/softmax output, or
    ``from_logits=True``) and the outputs for the squared error. The batch loss is
    ``sum(vals*sw)/B`` (``sum_over_batch_size``); the upstream gradient of sample ``i`` is
    ``((1/B) * sw_i) / k`` (the ``/k`` from the mean over outputs, when k > 1), as the graph's.
    """
    one = np.float32(1.0)
    zero = np.float32(0.0)
    two = np.float32(2.0)
    nb = np.float32(bc)
    kf = np.float32(kk)
    inv_n = one / nb
    if loss_kind == LOSS_BCE:
        for b in range(bc):
            gi = inv_n * ws[np.uint64(sw_off + b)] if has_sw else inv_n
            if kk > 1:
                gi = gi / kf
            for j in range(kk):
                i = j * bc + b
                z = ws[np.uint64(u_off + i)]
                y = ws[np.uint64(yb_off + b * kk + j)]
                e = np.exp(-abs(z))
                ws[np.uint64(row + j)] = ((z if z > zero else zero) - z * y) + np.log1p(e)
                sig = one / (one + e) if z >= zero else e / (one + e)
                ws[np.uint64(g_off + i)] = gi * (sig - y)
                if fused:
                    ws[np.uint64(h_off + i)] = sig
            if kk == 1:
                ws[np.uint64(v_off + b)] = ws[np.uint64(row)]
            else:
                ws[np.uint64(v_off + b)] = pairwise_sum(ws, row, kk) / kf
    elif loss_kind == LOSS_CCE or loss_kind == LOSS_SCCE:
        for b in range(bc):
            shift = ws[np.uint64(u_off + b)]
            for j in range(1, kk):
                if ws[np.uint64(u_off + j * bc + b)] > shift:
                    shift = ws[np.uint64(u_off + j * bc + b)]
            for j in range(kk):
                ws[np.uint64(row + j)] = np.exp(ws[np.uint64(u_off + j * bc + b)] - shift)
            total = pairwise_sum(ws, row, kk)
            log_total = np.log(total)
            gi = inv_n * ws[np.uint64(sw_off + b)] if has_sw else inv_n
            if fused:
                for j in range(kk):
                    ws[np.uint64(h_off + j * bc + b)] = ws[np.uint64(row + j)] / total
            if loss_kind == LOSS_CCE:
                # softmax into g first (row is reused for the per-class terms)
                for j in range(kk):
                    ws[np.uint64(g_off + j * bc + b)] = ws[np.uint64(row + j)] / total
                for j in range(kk):
                    ws[np.uint64(row + j)] = ws[np.uint64(yb_off + b * kk + j)] * (log_total - (ws[np.uint64(u_off + j * bc + b)] - shift))
                ws[np.uint64(v_off + b)] = pairwise_sum(ws, row, kk)
                total_y = pairwise_sum(ws, yb_off + b * kk, kk)
                for j in range(kk):
                    i = g_off + j * bc + b
                    ws[np.uint64(i)] = gi * (ws[np.uint64(i)] * total_y - ws[np.uint64(yb_off + b * kk + j)])
            else:
                label = labels[b]
                ws[np.uint64(v_off + b)] = log_total - (ws[np.uint64(u_off + label * bc + b)] - shift)
                for j in range(kk):
                    p = ws[np.uint64(row + j)] / total
                    if j == label:
                        p = p - one
                    ws[np.uint64(g_off + j * bc + b)] = gi * p
    else:  # LOSS_MSE
        for b in range(bc):
            for j in range(kk):
                d = ws[np.uint64(yb_off + b * kk + j)] - ws[np.uint64(u_off + j * bc + b)]
                ws[np.uint64(row + j)] = d * d
            if kk == 1:
                ws[np.uint64(v_off + b)] = ws[np.uint64(row)]
            else:
                ws[np.uint64(v_off + b)] = pairwise_sum(ws, row, kk) / kf
            gi = inv_n * ws[np.uint64(sw_off + b)] if has_sw else inv_n
            if kk > 1:
                gi = gi / kf
            for j in range(kk):
                ws[np.uint64(g_off + j * bc + b)] = -((gi * two) * (ws[np.uint64(yb_off + b * kk + j)] - ws[np.uint64(u_off + j * bc + b)]))
    if has_sw:
        for b in range(bc):
            ws[np.uint64(v_off + b)] = ws[np.uint64(v_off + b)] * ws[np.uint64(sw_off + b)]
    return pairwise_sum(ws, v_off, bc) / nb


@njit(**_JIT)
def _argmax_column(ws, off, kk, bc, b):
    """First index of the largest value of column ``b`` of the (k, B) block at ``off`` (np.argmax over classes)."""
    best = 0
    value = ws[np.uint64(off + b)]
    for j in range(1, kk):
        if ws[np.uint64(off + j * bc + b)] > value:
            value = ws[np.uint64(off + j * bc + b)]
            best = j
    return best


@njit(**_JIT)
def _argmax_row(ws, off, kk, b):
    """First index of the largest value of row ``b`` of the (B, k) block at ``off``."""
    best = 0
    value = ws[np.uint64(off + b * kk)]
    for j in range(1, kk):
        if ws[np.uint64(off + b * kk + j)] > value:
            value = ws[np.uint64(off + b * kk + j)]
            best = j
    return best


@njit(**_JIT)
def _metric_values(kind, threshold, ws, ym_off, labels, h_off, v_off, row, kk, bc):
    """Per-sample values of an accuracy metric into ``vals`` (pre-update predictions ``h``, (k, B))."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if kind == MET_BINARY:
        for b in range(bc):
            for j in range(kk):
                predicted = one if ws[np.uint64(h_off + j * bc + b)] > threshold else zero
                ws[np.uint64(row + j)] = one if ws[np.uint64(ym_off + b * kk + j)] == predicted else zero
            if kk == 1:
                ws[np.uint64(v_off + b)] = ws[np.uint64(row)]
            else:
                ws[np.uint64(v_off + b)] = pairwise_sum(ws, row, kk) / np.float32(kk)
    elif kind == MET_CATEGORICAL:
        for b in range(bc):
            ws[np.uint64(v_off + b)] = one if _argmax_row(ws, ym_off, kk, b) == _argmax_column(ws, h_off, kk, bc, b) else zero
    else:
        for b in range(bc):
            ws[np.uint64(v_off + b)] = one if labels[b] == _argmax_column(ws, h_off, kk, bc, b) else zero


# ---------------------------------------------------------------------------- optimizers
# Each rule below is the ``_update_step`` of its class in minitensor/optimizers.py written
# element by element: the same names, the same operations in the same order (the comments
# repeat the reference's). Weight decay and clipvalue come first, as in Optimizer._flushed_step.
# Every product ``a*b`` is written ``_fz(a, threshold(b)) * b``: the same float32 product,
# except that one which would be subnormal is 0 (and is never computed); a new slot value that
# is subnormal is stored as 0 (``_ftz``). See the module's docstring.
#
# A rule reads the current weights and slots and writes the new ones into a second set of
# arrays ("new_..."), then checks them: train_epoch adopts the new set (swaps the two) only when
# every new value of the step is finite, so a refused step leaves the current arrays untouched,
# bit for bit, without copying them first.

#: The slots of each optimizer (the names of :mod:`minitensor.optimizers`), in the order of the
#: kernel's slot arguments ``s0, s1, s2``.
SLOT_ROLES = {
    OPT_SGD: ("momentum",),
    OPT_RMSPROP: ("velocity", "momentum", "average_gradient"),
    OPT_ADAM: ("momentum", "velocity", "velocity_hat"),
    OPT_ADAGRAD: ("accumulator",),
}

#: Elements updated and then checked at a time (the new values are checked while in the cache).
UPDATE_BLOCK = 2048

# Loops over a range that starts at a run-time offset index with ``u = np.uint64(i)``: for a
# signed index Numba adds the negative-index wrap-around (``a[-1]``), which stops LLVM from
# vectorising the loop (measured: an Adam update over 95k values, 330 us signed, 43 us unsigned).

T_SQ = np.float32(np.sqrt(TINY) * (1.0 + 2.0**-20))  # |g| below it: g*g is subnormal


@njit(cache=True, error_model="numpy", fastmath={"reassoc"}, nogil=True)
def _non_finite_sum(a, lo, hi):
    """The sum of ``a[u] - a[u]`` over ``lo <= i < hi``: 0 when every value is finite, else NaN.

    Reassociation alone (no finite-math flags) lets the sum vectorise while keeping NaN
    and infinities as IEEE arithmetic has them (``x - x`` is NaN for an infinite ``x``).
    """
    total = np.float32(0.0)
    for i in range(lo, hi):
        u = np.uint64(i)
        total += a[u] - a[u]
    return total


@njit(**_JIT)
def _clipped(g, has_clip, clipvalue):
    """``clip(g, -clipvalue, clipvalue)`` (Optimizer._clip_gradients; NaN passes)."""
    if has_clip:
        if g < -clipvalue:
            return -clipvalue
        if g > clipvalue:
            return clipvalue
    return g


@njit(**_JIT)
def _decayed(w, has_wd, weight_decay, t_wd, lr, t_lr):
    """Optimizer._flushed_step's decoupled weight decay ``w - (w*weight_decay)*lr``."""
    if has_wd:
        return w - _fz(_fz(w, t_wd) * weight_decay, t_lr) * lr
    return w


@njit(**_JIT)
def _sgd_update(params, grads, momentum_slot, new_params, new_momentum_slot, lo, hi,
                lr, momentum, nesterov, has_momentum, weight_decay, has_wd, clipvalue, has_clip):
    """``SGD._update_step`` on elements ``lo..hi``; True when every new value is finite.

    ``momentum_slot`` is the slot "momentum" (``momentum`` is the hyperparameter).
    """
    t_lr = _threshold(lr)
    t_wd = _threshold(weight_decay)
    t_mom = _threshold(momentum)
    check = np.float32(0.0)
    for start in range(lo, hi, UPDATE_BLOCK):
        stop = min(start + UPDATE_BLOCK, hi)
        if has_momentum:
            for i in range(start, stop):
                u = np.uint64(i)
                g = _clipped(grads[u], has_clip, clipvalue)
                w = _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr)
                gl = _fz(g, t_lr) * lr  # g*lr
                m = _ftz(_fz(momentum_slot[u], t_mom) * momentum - gl)  # m*momentum - g*lr
                new_momentum_slot[u] = m
                if nesterov:
                    new_params[u] = w + (_fz(m, t_mom) * momentum - gl)  # w + (m*momentum - g*lr)
                else:
                    new_params[u] = w + m  # w + m
            check += _non_finite_sum(new_momentum_slot, start, stop)
        else:
            for i in range(start, stop):
                u = np.uint64(i)
                g = _clipped(grads[u], has_clip, clipvalue)
                w = _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr)
                new_params[u] = w - _fz(g, t_lr) * lr  # w - g*lr
        check += _non_finite_sum(new_params, start, stop)
    return check == 0


@njit(**_JIT)
def _rmsprop_element(g, w, v, mom, a, lr, t_lr, rho, t_rho, one_minus_rho, t_omr, momentum, t_mom, epsilon,
                     centered, has_momentum):
    """One element of ``RMSprop._update_step``: the new ``(w, v, mom, a)`` (unused slots give 0)."""
    gg = _fz(g, T_SQ) * g
    v = _ftz(_fz(v, t_rho) * rho + _fz(gg, t_omr) * one_minus_rho)  # v*rho + g*g*(1-rho)
    if centered:
        a = _ftz(_fz(a, t_rho) * rho + _fz(g, t_omr) * one_minus_rho)  # a*rho + g*(1-rho)
        denom = (v - _fz(a, T_SQ) * a) + epsilon  # v - a*a + epsilon
    else:
        denom = v + epsilon
    inc = (_fz(g, t_lr) * lr) / np.sqrt(denom)  # increment: g*lr / sqrt(denom)
    if has_momentum:
        mom = _ftz(_fz(mom, t_mom) * momentum + inc)  # mom*momentum + increment
        return w - mom, v, mom, a
    return w - inc, v, mom, a


@njit(**_JIT)
def _rmsprop_update(params, grads, velocity, momentum_slot, average_gradient,
                    new_params, new_velocity, new_momentum_slot, new_average_gradient, lo, hi,
                    lr, rho, one_minus_rho, momentum, epsilon, centered, has_momentum,
                    weight_decay, has_wd, clipvalue, has_clip):
    """``RMSprop._update_step`` on elements ``lo..hi``; True when every new value is finite.

    ``momentum_slot`` is the slot "momentum" (``momentum`` is the hyperparameter). One loop
    per combination of options, each storing only the slots in use (a store under a condition
    would keep the loop from vectorising).
    """
    t_lr = _threshold(lr)
    t_wd = _threshold(weight_decay)
    t_rho = _threshold(rho)
    t_omr = _threshold(one_minus_rho)
    t_mom = _threshold(momentum)
    zero = np.float32(0.0)
    check = np.float32(0.0)
    for start in range(lo, hi, UPDATE_BLOCK):
        stop = min(start + UPDATE_BLOCK, hi)
        if centered and has_momentum:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_velocity[u], new_momentum_slot[u], new_average_gradient[u] = _rmsprop_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    velocity[u], momentum_slot[u], average_gradient[u], lr, t_lr, rho, t_rho, one_minus_rho, t_omr,
                    momentum, t_mom, epsilon, centered, has_momentum)
        elif centered:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_velocity[u], _, new_average_gradient[u] = _rmsprop_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    velocity[u], zero, average_gradient[u], lr, t_lr, rho, t_rho, one_minus_rho, t_omr,
                    momentum, t_mom, epsilon, centered, has_momentum)
        elif has_momentum:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_velocity[u], new_momentum_slot[u], _ = _rmsprop_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    velocity[u], momentum_slot[u], zero, lr, t_lr, rho, t_rho, one_minus_rho, t_omr,
                    momentum, t_mom, epsilon, centered, has_momentum)
        else:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_velocity[u], _, _ = _rmsprop_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    velocity[u], zero, zero, lr, t_lr, rho, t_rho, one_minus_rho, t_omr,
                    momentum, t_mom, epsilon, centered, has_momentum)
        check += _non_finite_sum(new_params, start, stop) + _non_finite_sum(new_velocity, start, stop)
        if centered:
            check += _non_finite_sum(new_average_gradient, start, stop)
        if has_momentum:
            check += _non_finite_sum(new_momentum_slot, start, stop)
    return check == 0


@njit(**_JIT)
def _adam_element(g, w, m, v, vhat, alpha, t_alpha, one_minus_beta_1, t_b1, one_minus_beta_2, t_b2, epsilon, amsgrad):
    """One element of ``Adam._update_step``: the new ``(w, m, v, vhat)`` (``vhat`` unchanged without amsgrad).

    (The options are passed as run-time bools, not constants: one compiled variant; the
    branches only choose values, so the callers' loops still vectorise.)
    """
    m = _ftz(m + _fz(g - m, t_b1) * one_minus_beta_1)  # m + (g - m)*(1 - beta_1)
    v = _ftz(v + _fz(_fz(g, T_SQ) * g - v, t_b2) * one_minus_beta_2)  # v + (g*g - v)*(1 - beta_2)
    if amsgrad:
        if v > vhat or v != v:  # np.maximum(vhat, v), NaN kept
            vhat = v
        return w - (_fz(m, t_alpha) * alpha) / (np.sqrt(vhat) + epsilon), m, v, vhat  # vhat replaces v
    return w - (_fz(m, t_alpha) * alpha) / (np.sqrt(v) + epsilon), m, v, vhat  # w - (m*alpha)/(sqrt(v) + epsilon)


@njit(**_JIT)
def _adam_update(params, grads, m, v, vhat, new_params, new_m, new_v, new_vhat, lo, hi,
                 lr, beta_1, beta_2, one_minus_beta_1, one_minus_beta_2, epsilon, amsgrad, iterations,
                 weight_decay, has_wd, clipvalue, has_clip):
    """``Adam._update_step`` on elements ``lo..hi`` (``iterations`` steps taken before); True when finite.

    ``m``, ``v``, ``vhat`` are the slots "momentum", "velocity", "velocity_hat".
    """
    one = np.float32(1.0)
    t = np.float32(iterations + 1)
    alpha = lr * np.sqrt(one - beta_2**t) / (one - beta_1**t)
    t_lr = _threshold(lr)
    t_wd = _threshold(weight_decay)
    t_b1 = _threshold(one_minus_beta_1)
    t_b2 = _threshold(one_minus_beta_2)
    t_alpha = _threshold(alpha)
    zero = np.float32(0.0)
    check = np.float32(0.0)
    for start in range(lo, hi, UPDATE_BLOCK):
        stop = min(start + UPDATE_BLOCK, hi)
        if amsgrad:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_m[u], new_v[u], new_vhat[u] = _adam_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    m[u], v[u], vhat[u], alpha, t_alpha, one_minus_beta_1, t_b1, one_minus_beta_2, t_b2, epsilon, amsgrad)
            check += _non_finite_sum(new_vhat, start, stop)
        else:
            for i in range(start, stop):
                u = np.uint64(i)
                new_params[u], new_m[u], new_v[u], _ = _adam_element(
                    _clipped(grads[u], has_clip, clipvalue), _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr),
                    m[u], v[u], zero, alpha, t_alpha, one_minus_beta_1, t_b1, one_minus_beta_2, t_b2, epsilon, amsgrad)
        check += (_non_finite_sum(new_params, start, stop) + _non_finite_sum(new_m, start, stop)
                  + _non_finite_sum(new_v, start, stop))
    return check == 0


@njit(**_JIT)
def _adagrad_update(params, grads, accumulator, new_params, new_accumulator, lo, hi,
                    lr, epsilon, weight_decay, has_wd, clipvalue, has_clip):
    """``Adagrad._update_step`` on elements ``lo..hi``; True when every new value is finite."""
    t_lr = _threshold(lr)
    t_wd = _threshold(weight_decay)
    check = np.float32(0.0)
    for start in range(lo, hi, UPDATE_BLOCK):
        stop = min(start + UPDATE_BLOCK, hi)
        for i in range(start, stop):
            u = np.uint64(i)
            g = _clipped(grads[u], has_clip, clipvalue)
            w = _decayed(params[u], has_wd, weight_decay, t_wd, lr, t_lr)
            acc = accumulator[u] + _fz(g, T_SQ) * g  # acc + g*g
            new_accumulator[u] = acc
            new_params[u] = w - (_fz(g, t_lr) * lr) / np.sqrt(acc + epsilon)  # w - g*lr / sqrt(acc + epsilon)
        check += _non_finite_sum(new_params, start, stop) + _non_finite_sum(new_accumulator, start, stop)
    return check == 0


@njit(inline="always", **_JIT)
def _update(opt_kind, hyper, flags, params, grads, s0, s1, s2, new_params, new_s0, new_s1, new_s2,
            lo, hi, iterations):
    """The optimizer ``opt_kind``'s step on elements ``lo..hi`` into the ``new_`` arrays; True when finite.

    ``s0, s1, s2`` hold the slots in :data:`SLOT_ROLES` order (unused ones are 1-element dummies).
    """
    lr = hyper[H_LR]
    weight_decay = hyper[H_WD]
    has_wd = flags[F_WD] != 0
    clipvalue = hyper[H_CLIP]
    has_clip = flags[F_CLIP] != 0
    if opt_kind == OPT_SGD:
        return _sgd_update(params, grads, s0, new_params, new_s0, lo, hi, lr, hyper[H_MOMENTUM],
                           flags[F_NESTEROV] != 0, flags[F_MOMENTUM] != 0, weight_decay, has_wd, clipvalue, has_clip)
    if opt_kind == OPT_RMSPROP:
        return _rmsprop_update(params, grads, s0, s1, s2, new_params, new_s0, new_s1, new_s2, lo, hi,
                               lr, hyper[H_RHO], hyper[H_ONE_MINUS_RHO], hyper[H_MOMENTUM], hyper[H_EPS],
                               flags[F_CENTERED] != 0, flags[F_MOMENTUM] != 0, weight_decay, has_wd, clipvalue,
                               has_clip)
    if opt_kind == OPT_ADAM:
        return _adam_update(params, grads, s0, s1, s2, new_params, new_s0, new_s1, new_s2, lo, hi,
                            lr, hyper[H_BETA_1], hyper[H_BETA_2], hyper[H_ONE_MINUS_BETA_1],
                            hyper[H_ONE_MINUS_BETA_2], hyper[H_EPS], flags[F_AMSGRAD] != 0, iterations,
                            weight_decay, has_wd, clipvalue, has_clip)
    return _adagrad_update(params, grads, s0, new_params, new_s0, lo, hi, lr, hyper[H_EPS],
                           weight_decay, has_wd, clipvalue, has_clip)


# ---------------------------------------------------------------------------- dropout
@njit(**_JIT)
def _dropout_forward(ws, dmeta, dscale, masks, d, bc, pos):
    """Dropout layer ``d`` on epoch rows ``pos..pos+bc``: ``dst = src * factor`` ((width, B) blocks).

    The masks are stored sample-major (one row of ``width`` per epoch row), as they were drawn.
    """
    width = dmeta[d, D_WIDTH]
    src = dmeta[d, D_SRC]
    dst = dmeta[d, D_DST]
    base = dmeta[d, D_MASK] + pos * width
    scale = dscale[d]
    zero = np.float32(0.0)
    for c in range(width):
        for b in range(bc):
            ws[np.uint64(dst + c * bc + b)] = ws[np.uint64(src + c * bc + b)] * (scale if masks[np.uint64(base + b * width + c)] else zero)


@njit(**_JIT)
def _dropout_backward(ws, g_off, dmeta, dscale, masks, d, bc, pos):
    """The (width, B) gradient block at ``g_off`` times dropout layer ``d``'s factors."""
    width = dmeta[d, D_WIDTH]
    base = dmeta[d, D_MASK] + pos * width
    scale = dscale[d]
    zero = np.float32(0.0)
    for c in range(width):
        for b in range(bc):
            i = g_off + c * bc + b
            ws[np.uint64(i)] = ws[np.uint64(i)] * (scale if masks[np.uint64(base + b * width + c)] else zero)


# ---------------------------------------------------------------------------- the epoch
@njit(**_JIT)
def train_epoch(
    x, yb_all, ym_all, labels_all, sw_all, has_sw, order, shuffled, batch_size,
    params, grads, lmeta, lreg, dmeta, dscale, masks, ws, labels_ws, goff,
    loss_kind, logits, mkinds, mthresh, mstate,
    opt_kind, hyper, flags, s0, s1, s2, iterations, spare,
    tracker, status,
):
    """Train one epoch; return the number of steps applied.

    Args:
        x: (n, d0) float32 inputs. yb_all / ym_all: (n, k) float32 targets for the loss (label
            smoothing applied) and for the metrics (dummies for a sparse loss). labels_all: (n,)
            int64 class ids (sparse loss; else a dummy). sw_all: (n,) float32 sample weights,
            used when ``has_sw``. order: (n,) int64 permutation, used when ``shuffled``.
        params / grads: the flat float32 parameters (updated in place) and gradient buffer.
        lmeta, lreg, dmeta, dscale, masks, goff: see the column constants above; ``masks`` holds
            each Dropout layer's keep-mask for every row of the epoch, in batch order.
        ws / labels_ws: float32 and int64 workspaces.
        loss_kind, logits: the loss code, and whether it reads the last layer's pre-activation.
        mkinds, mthresh, mstate: metric codes, thresholds, and (total, count) float32 states.
        opt_kind, hyper, flags, s0, s1, s2, iterations: the optimizer, its slots (in
            :data:`SLOT_ROLES` order), its step count.
        spare: float32 array of 4 x params.size: the second set of weights and slots a step writes
            (see the optimizers' section).
        tracker: the loss tracker's (total, count), float32, updated in place.
        status: float64[2] output: (0 after a whole epoch, 1 if stopped on a non-finite loss,
            2 on an update that would make a weight or slot non-finite; the step's loss).

    The step at which a non-finite loss or update appears is not applied (nor counted in
    the tracker or metrics): the return value is then its index.
    """
    x, yb_all, ym_all, labels_all, sw_all = _borrowed(x), _borrowed(yb_all), _borrowed(ym_all), _borrowed(labels_all), _borrowed(sw_all)
    order, params, grads, lmeta, lreg = _borrowed(order), _borrowed(params), _borrowed(grads), _borrowed(lmeta), _borrowed(lreg)
    dmeta, dscale, masks, ws, labels_ws = _borrowed(dmeta), _borrowed(dscale), _borrowed(masks), _borrowed(ws), _borrowed(labels_ws)
    goff, mkinds, mthresh, mstate = _borrowed(goff), _borrowed(mkinds), _borrowed(mthresh), _borrowed(mstate)
    hyper, flags, s0, s1, s2 = _borrowed(hyper), _borrowed(flags), _borrowed(s0), _borrowed(s1), _borrowed(s2)
    spare, tracker, status = _borrowed(spare), _borrowed(tracker), _borrowed(status)
    n = x.shape[0]
    d0 = x.shape[1]
    nl = lmeta.shape[0]
    nd = dmeta.shape[0]
    nm = mkinds.shape[0]
    kk = lmeta[nl - 1, L_OUT]
    last_act = lmeta[nl - 1, L_ACT]
    # the loss computes the output activation itself (same formula): sigmoid + BCE, softmax + CCE
    fused = logits and (
        (last_act == ACT_SIGMOID and loss_kind == LOSS_BCE)
        or (last_act == ACT_SOFTMAX and (loss_kind == LOSS_CCE or loss_kind == LOSS_SCCE))
    )
    status[0] = 0.0
    status[1] = 0.0
    nsteps = (n + batch_size - 1) // batch_size
    t_total = tracker[0]
    t_count = tracker[1]
    row = goff[G_R]
    xb = goff[G_XB]
    yb = goff[G_YB]
    ym = goff[G_YM]
    sw = goff[G_SW]
    vals = goff[G_V]
    # a first layer that multiplies through BLAS reads its batch sample-major, (B, d0) as BLAS's
    # transposed operand: gathering whole rows is several times faster than transposing them
    # (unless an input Dropout, which works feature-major, comes first)
    x_rows = lmeta[0, L_BLAS] != 0 and lmeta[0, L_A] == xb
    # the current weights and slots, and the arrays a step writes its new values into (the
    # caller's arrays and `spare`, taking turns: see the optimizers' section)
    n_par = params.size
    cur_params = params[0:n_par]
    cur_s0 = s0[0:s0.size]
    cur_s1 = s1[0:s1.size]
    cur_s2 = s2[0:s2.size]
    new_params = spare[0:n_par]
    new_s0 = spare[n_par: 2 * n_par] if s0.size == n_par else s0[0:s0.size]
    new_s1 = spare[2 * n_par: 3 * n_par] if s1.size == n_par else s1[0:s1.size]
    new_s2 = spare[3 * n_par: 4 * n_par] if s2.size == n_par else s2[0:s2.size]
    swapped = False
    for step in range(nsteps):
        pos = step * batch_size
        bc = min(batch_size, n - pos)
        nb = np.float32(bc)
        # ---- gather the batch: inputs feature-major (d0, B) (or sample-major), targets sample-major (B, k)
        for b in range(bc):
            r = order[pos + b] if shuffled else pos + b
            if x_rows:
                for c in range(d0):
                    ws[np.uint64(xb + b * d0 + c)] = x[r, c]
            else:
                for c in range(d0):
                    ws[np.uint64(xb + c * bc + b)] = x[r, c]
            if loss_kind == LOSS_SCCE:
                labels_ws[b] = labels_all[r]
            else:
                for j in range(kk):
                    ws[np.uint64(yb + b * kk + j)] = yb_all[r, j]
                if nm > 0:
                    for j in range(kk):
                        ws[np.uint64(ym + b * kk + j)] = ym_all[r, j]
            if has_sw:
                ws[np.uint64(sw + b)] = sw_all[r]
        # ---- forward
        for d in range(nd):
            if dmeta[d, D_AFTER] == -1:
                _dropout_forward(ws, dmeta, dscale, masks, d, bc, pos)
        for l in range(nl):
            kin = lmeta[l, L_IN]
            jout = lmeta[l, L_OUT]
            _dense_forward(ws, lmeta[l, L_A], l == 0 and x_rows, cur_params, lmeta[l, L_WOFF], lmeta[l, L_BOFF],
                           lmeta[l, L_Z], kin, jout, bc, lmeta[l, L_BLAS] != 0)
            if lmeta[l, L_H] != lmeta[l, L_Z] and not (fused and l == nl - 1):
                _activation_forward(ws, lmeta[l, L_Z], lmeta[l, L_H], jout, bc, lmeta[l, L_ACT], row)
            for d in range(nd):
                if dmeta[d, D_AFTER] == l:
                    _dropout_forward(ws, dmeta, dscale, masks, d, bc, pos)
        # ---- loss (+ penalties at the pre-update weights)
        zl = lmeta[nl - 1, L_Z]
        hl = lmeta[nl - 1, L_H]
        g1 = goff[G_G1]
        loss = _loss_forward_backward(ws, zl if logits else hl, yb, labels_ws, sw, has_sw, loss_kind, g1, vals, row,
                                      fused, hl, kk, bc)
        for l in range(nl):
            kl1 = lreg[l, R_KL1]
            kl2 = lreg[l, R_KL2]
            if kl1 != 0 or kl2 != 0:
                loss = loss + _penalty(cur_params, lmeta[l, L_WOFF], lmeta[l, L_IN] * lmeta[l, L_OUT], kl1, kl2)
            bl1 = lreg[l, R_BL1]
            bl2 = lreg[l, R_BL2]
            if lmeta[l, L_BOFF] >= 0 and (bl1 != 0 or bl2 != 0):
                loss = loss + _penalty(cur_params, lmeta[l, L_BOFF], lmeta[l, L_OUT], bl1, bl2)
        if not np.isfinite(loss):
            status[0] = 1.0
            status[1] = np.float64(loss)
            tracker[0] = t_total
            tracker[1] = t_count
            if swapped:
                _copy_state(params, s0, s1, s2, cur_params, cur_s0, cur_s1, cur_s2)
            return step
        # ---- backward, each layer's update right after its gradient (into the new arrays)
        if not logits:
            _activation_backward(ws, g1, hl, kk, bc, last_act, row)
        gcur = g1
        gnext = goff[G_G2]
        finite = True
        for l in range(nl - 1, -1, -1):
            kin = lmeta[l, L_IN]
            jout = lmeta[l, L_OUT]
            woff = lmeta[l, L_WOFF]
            boff = lmeta[l, L_BOFF]
            if l < nl - 1 and lmeta[l, L_H] != lmeta[l, L_Z]:
                _activation_backward(ws, gcur, lmeta[l, L_H], jout, bc, lmeta[l, L_ACT], row)
            _dense_backward(ws, lmeta[l, L_A], l == 0 and x_rows, cur_params, grads, woff, boff, gcur, gnext,
                            kin, jout, bc, l > 0, lmeta[l, L_BLAS] != 0)
            kl1 = lreg[l, R_KL1]
            kl2 = lreg[l, R_KL2]
            if kl1 != 0 or kl2 != 0:
                _penalty_grad(cur_params, grads, woff, kin * jout, kl1, kl2)
            bl1 = lreg[l, R_BL1]
            bl2 = lreg[l, R_BL2]
            if boff >= 0 and (bl1 != 0 or bl2 != 0):
                _penalty_grad(cur_params, grads, boff, jout, bl1, bl2)
            if finite:
                end = boff + jout if boff >= 0 else woff + kin * jout
                finite = _update(opt_kind, hyper, flags, cur_params, grads, cur_s0, cur_s1, cur_s2,
                                 new_params, new_s0, new_s1, new_s2, woff, end, iterations + step)
            if l > 0:
                for d in range(nd - 1, -1, -1):
                    if dmeta[d, D_AFTER] == l - 1:
                        _dropout_backward(ws, gnext, dmeta, dscale, masks, d, bc, pos)
                gcur, gnext = gnext, gcur
        # ---- adopt the new weights and slots, unless one of them is not finite
        if not finite:
            status[0] = 2.0
            status[1] = np.float64(loss)
            tracker[0] = t_total
            tracker[1] = t_count
            if swapped:
                _copy_state(params, s0, s1, s2, cur_params, cur_s0, cur_s1, cur_s2)
            return step
        cur_params, new_params = new_params, cur_params
        cur_s0, new_s0 = new_s0, cur_s0
        cur_s1, new_s1 = new_s1, cur_s1
        cur_s2, new_s2 = new_s2, cur_s2
        swapped = not swapped
        t_total = t_total + loss * nb
        t_count = t_count + nb
        # ---- metrics, from the pre-update predictions (the backward pass leaves them in place)
        for mi in range(nm):
            _metric_values(mkinds[mi], mthresh[mi], ws, ym, labels_ws, hl, vals, row, kk, bc)
            if has_sw:
                for b in range(bc):
                    ws[np.uint64(vals + b)] = ws[np.uint64(vals + b)] * ws[np.uint64(sw + b)]
                mstate[mi, 0] = mstate[mi, 0] + pairwise_sum(ws, vals, bc)
                mstate[mi, 1] = mstate[mi, 1] + pairwise_sum(ws, sw, bc)
            else:
                mstate[mi, 0] = mstate[mi, 0] + pairwise_sum(ws, vals, bc)
                mstate[mi, 1] = mstate[mi, 1] + nb
    tracker[0] = t_total
    tracker[1] = t_count
    if swapped:
        _copy_state(params, s0, s1, s2, cur_params, cur_s0, cur_s1, cur_s2)
    return nsteps


@njit(**_JIT)
def _copy_state(params, s0, s1, s2, cur_params, cur_s0, cur_s1, cur_s2):
    """Copy the current weights and slots into the caller's arrays (when they are the other set)."""
    for i in range(params.size):
        params[i] = cur_params[i]
    for i in range(s0.size):
        s0[i] = cur_s0[i]
    for i in range(s1.size):
        s1[i] = cur_s1[i]
    for i in range(s2.size):
        s2[i] = cur_s2[i]
