"""Metamorphic mutations with DeepHunter's semantic constraint (Xie et al., ISSTA 2019; spec A.4-A.5).

A mutation should change an image without changing what it shows, so that the seed's label still holds
for the mutant. DeepHunter ensures this with two operator classes and one constraint:

* **pixel-value operators** (P: contrast, brightness, blur, noise, pixel change) may be applied again
  and again, but every result must stay close to a *reference* image ``r``: few elements changed
  (``L0 < alpha * size``) **or** every element changed only a little (``Linf < beta * 255``);
* **affine operators** (G: translation, scale, shear, rotation) may be applied **once** per lineage;
  they are applied to the reference too (so later pixel changes are measured against the transformed
  seed), and afterwards the pixel distances accumulate (paper Eq. 2):
  ``L0_ref + L0(r, s') < alpha * size  or  max(Linf_ref, Linf(r, s')) < beta * 255``, where
  ``L0_ref, Linf_ref`` are the distances the lineage had reached when the affine operator was applied.

A mutation draws an operator uniformly (only from P once an affine operator was used), then a parameter
uniformly from that operator's set, and retries up to ``tries`` times (50) until the constraint holds;
if no try succeeds the mutation yields nothing.

Images are float32 NCHW in [0, 1]; DeepHunter works on uint8 0..255, so its grey-level parameters are
divided by 255 here, and an element counts as changed for L0 when it moved by more than half a grey
level (what rounding to uint8 would keep). Every random choice comes from the ``numpy.random.Generator``
passed in.

Deviations from DeepHunter's released code, as the spec prescribes (A.4 "Notes and fixes"): contrast,
brightness and blur are repeatable pixel operators (as in the paper), distances are computed without
uint8 wrap-around, salt is white (1.0), speckle output is clipped, Gaussian noise uses sigma 2, 4, 8 grey
levels, and identity parameters (shift 0, scale 1, shear 0, angle 0, brightness 0, contrast 1) are left
out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from roadworthy.errors import InvalidInputError

Kind = Literal["pixel", "affine"]
OperatorFn = Callable[[np.ndarray, Sequence[Any], np.random.Generator], np.ndarray]

ALPHA = 0.02
BETA = 0.20
TRIES = 50
# half a grey level: a smaller change would vanish when the image is stored as uint8
CHANGE_TOLERANCE = 0.5 / 255.0


@dataclass(frozen=True)
class Operator:
    """One metamorphic operator.

    Attributes
    ----------
    name
        Operator name (``contrast``, ``rotation``, ...).
    kind
        ``"pixel"`` (repeatable, checked by the constraint) or ``"affine"`` (once per lineage).
    params
        The parameter set; one value is drawn uniformly per mutation.
    fn
        ``fn(x, params, rng) -> x'``: ``x`` is ``(m, C, H, W)`` float32 in [0, 1], ``params`` one value
        per image; returns a new array of the same shape in [0, 1]. Each image's result must depend only
        on that image, its parameter and ``rng``.
    stochastic
        Whether ``fn`` draws from ``rng``. A stochastic operator is applied one image at a time, and the
        generator's state before each image is recorded (:attr:`Mutants.state`), so that any mutant can
        be rebuilt from its root seed and its steps (:func:`replay`). ``False`` promises that ``fn``
        never touches ``rng`` (the operator then runs on all its images in one call). Default ``True``,
        the safe choice for a custom operator.
    """

    name: str
    kind: Kind
    params: tuple[Any, ...]
    fn: OperatorFn
    stochastic: bool = True

    def __call__(self, x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
        return np.clip(self.fn(x, params, rng), 0.0, 1.0).astype(np.float32, copy=False)


# -- per-image helpers (OpenCV works on HWC) ---------------------------------------------------------------


def _per_image(
    x: np.ndarray, params: Sequence[Any], f: Callable[[np.ndarray, Any], np.ndarray]
) -> np.ndarray:
    """Apply ``f(hwc_image, param)`` to each image; channels beyond OpenCV's 1/3/4 go one at a time."""
    out = np.empty_like(x)
    c = x.shape[1]
    for i, p in enumerate(params):
        hwc = np.ascontiguousarray(x[i].transpose(1, 2, 0))
        if c in (1, 3, 4):
            res = f(hwc, p)
            out[i] = res.reshape(hwc.shape).transpose(2, 0, 1)
        else:
            for ch in range(c):
                out[i, ch] = f(np.ascontiguousarray(hwc[:, :, ch]), p).reshape(hwc.shape[:2])
    return out


def _warp(matrix: Callable[[int, int, Any], np.ndarray]) -> OperatorFn:
    def fn(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = x.shape[2], x.shape[3]

        def one(img: np.ndarray, p: Any) -> np.ndarray:
            # warpAffine treats INTER_AREA as bilinear, so DeepHunter's "area" rotation is bilinear too
            return cv2.warpAffine(
                img,
                matrix(h, w, p),
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )

        return _per_image(x, params, one)

    return fn


def _translation_matrix(h: int, w: int, t: Any) -> np.ndarray:
    return np.float32([[1, 0, t], [0, 1, t]])


def _shear_matrix(h: int, w: int, s: Any) -> np.ndarray:
    return np.float32([[1, -s, 0], [0, 1, 0]])


def _rotation_matrix(h: int, w: int, angle: Any) -> np.ndarray:
    import cv2

    return cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0).astype(np.float32)


def _scale(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    """Bicubic resize by ``s``, then centre-crop (s > 1) or centre zero-pad (s < 1) back to size."""
    import cv2

    h, w = x.shape[2], x.shape[3]

    def one(img: np.ndarray, s: Any) -> np.ndarray:
        res = cv2.resize(img, None, fx=float(s), fy=float(s), interpolation=cv2.INTER_CUBIC)
        res = res.reshape(res.shape[0], res.shape[1], -1)
        rh, rw = res.shape[:2]
        canvas = np.zeros((h, w, res.shape[2]), dtype=np.float32)
        if rh >= h:
            top, left = (rh - h) // 2, (rw - w) // 2
            canvas[:] = res[top : top + h, left : left + w]
        else:
            top, left = (h - rh) // 2, (w - rw) // 2
            canvas[top : top + rh, left : left + rw] = res
        return canvas

    return _per_image(x, params, one)


def _contrast(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    return x * np.asarray(params, dtype=np.float32)[:, None, None, None]


def _brightness(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    return x + np.asarray(params, dtype=np.float32)[:, None, None, None] / 255.0


# DeepHunter's nine blurs, by name so the parameter set stays readable in reports
BLURS = ("box3", "box4", "box5", "gauss3", "gauss5", "gauss7", "median3", "median5", "bilateral")


def _blur(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    import cv2

    def one(img: np.ndarray, p: Any) -> np.ndarray:
        kind, size = str(p)[:-1], str(p)[-1]
        if p == "bilateral":
            # sigmaColor 50 grey levels on DeepHunter's 0..255 scale
            return cv2.bilateralFilter(img, 6, 50.0 / 255.0, 50.0)
        k = int(size)
        if kind == "box":
            return cv2.blur(img, (k, k))
        if kind == "gauss":
            return cv2.GaussianBlur(img, (k, k), 0)
        return cv2.medianBlur(img, k)

    return _per_image(x, params, one)


NOISES = ("gauss2", "gauss4", "gauss8", "salt_pepper", "speckle")


def _noise(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    size = x[0].size
    for i, p in enumerate(params):
        if p.startswith("gauss"):
            out[i] += rng.normal(0.0, float(p[5:]) / 255.0, size=x[i].shape).astype(np.float32)
        elif p == "salt_pepper":
            # amount 0.004 of the elements, half set to white, half to black
            n = int(np.ceil(0.004 * size * 0.5))
            flat = out[i].reshape(-1)
            flat[rng.integers(0, size, n)] = 1.0
            flat[rng.integers(0, size, n)] = 0.0
        else:
            # speckle x + x*n with n ~ N(0, 1) as the spec gives it: strong, so the constraint rejects it
            # unless the image is dark; kept for fidelity, a rejected try costs only time
            out[i] += x[i] * rng.standard_normal(size=x[i].shape).astype(np.float32)
    return out


def _pixel_change(x: np.ndarray, params: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    size = x[0].size
    for i, p in enumerate(params):
        flat = out[i].reshape(-1)
        idx = rng.choice(size, size=int(p), replace=False)
        flat[idx] = rng.integers(0, 256, size=int(p)).astype(np.float32) / 255.0
    return out


def _frange(start: float, stop: float, step: float) -> tuple[float, ...]:
    n = round((stop - start) / step)
    return tuple(round(start + i * step, 10) for i in range(n))


def default_operators() -> tuple[Operator, ...]:
    """DeepHunter's operators with the released code's parameter sets (spec A.4), identities removed."""
    fixed = {"stochastic": False}
    return (
        Operator(
            "translation",
            "affine",
            tuple(t for t in range(-3, 3) if t != 0),
            _warp(_translation_matrix),
            **fixed,
        ),
        Operator("scale", "affine", (0.7, 0.8, 0.9, 1.1), _scale, **fixed),
        Operator(
            "shear",
            "affine",
            tuple(h for h in _frange(-0.6, 0.6, 0.1) if h != 0),
            _warp(_shear_matrix),
            **fixed,
        ),
        Operator(
            "rotation", "affine", tuple(a for a in range(-50, 50) if a != 0), _warp(_rotation_matrix), **fixed
        ),
        Operator(
            "contrast", "pixel", tuple(a for a in _frange(0.5, 1.3, 0.1) if a != 1.0), _contrast, **fixed
        ),
        Operator("brightness", "pixel", tuple(b for b in range(-20, 20) if b != 0), _brightness, **fixed),
        Operator("blur", "pixel", BLURS, _blur, **fixed),
        Operator("noise", "pixel", NOISES, _noise),
        Operator("pixel_change", "pixel", tuple(range(1, 10)), _pixel_change),
    )


def make_operators(
    names: Sequence[str] | None = None,
    params: Mapping[str, Sequence[Any]] | None = None,
    extra: Sequence[Operator] = (),
) -> tuple[Operator, ...]:
    """Select and adjust operators.

    Parameters
    ----------
    names
        Operators to keep (default: all of :func:`default_operators` plus ``extra``).
    params
        Replacement parameter sets by operator name, e.g. ``{"rotation": range(-15, 16)}``.
    extra
        Further operators, e.g. wrapping the project's own image shifts as pixel operators.
    """
    pool = {op.name: op for op in (*default_operators(), *extra)}
    chosen = list(pool) if names is None else list(names)
    ops = []
    for name in chosen:
        if name not in pool:
            raise InvalidInputError(
                f"fuzz: unknown mutation operator '{name}'. Expected one of {', '.join(pool)}."
            )
        op = pool[name]
        if params and name in params:
            values = tuple(params[name])
            if not values:
                raise InvalidInputError(f"fuzz: the parameter set of operator '{name}' is empty")
            op = replace(op, params=values)
        ops.append(op)
    if params:
        unknown = set(params) - set(pool)
        if unknown:
            raise InvalidInputError(
                f"fuzz: parameters given for unknown operator(s) {', '.join(sorted(unknown))}"
            )
    if not ops:
        raise InvalidInputError("fuzz: no mutation operator selected")
    return tuple(ops)


# -- the constrained mutation ---------------------------------------------------------------------------


def distances(
    ref: np.ndarray, x: np.ndarray, tolerance: float = CHANGE_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``(L0, Linf)`` between ``ref`` and ``x``: elements moved by more than ``tolerance``,
    and the largest move (in [0, 1] units; times 255 for grey levels)."""
    diff = np.abs(x.reshape(len(x), -1) - ref.reshape(len(ref), -1))
    return (diff > tolerance).sum(axis=1).astype(np.int64), diff.max(axis=1, initial=0.0).astype(np.float32)


def satisfies(
    l0: np.ndarray, linf: np.ndarray, size: int, alpha: float = ALPHA, beta: float = BETA
) -> np.ndarray:
    """DeepHunter's constraint: ``L0 < alpha * size`` or ``Linf < beta`` (``beta * 255`` grey levels)."""
    return (l0 < alpha * size) | (linf < beta)


@dataclass
class Mutants:
    """The outcome of :func:`mutate` for ``n`` rows; rows with ``ok`` false yielded nothing.

    Attributes
    ----------
    x, ref
        Mutants and their references (the reference changes only when an affine operator was applied).
    affine_used, l0_ref, linf_ref
        The lineage state after the mutation (see the module docstring).
    op, param
        Index of the operator applied and the parameter value (``-1`` / ``None`` where not ok).
    ok
        Whether a try satisfied the constraint.
    state
        The generator's state just before a stochastic operator drew for this row (``None`` for a
        deterministic one): with ``op`` and ``param`` it is the step :func:`replay` needs.
    """

    x: np.ndarray
    ref: np.ndarray
    affine_used: np.ndarray
    l0_ref: np.ndarray
    linf_ref: np.ndarray
    op: np.ndarray
    param: list[Any]
    ok: np.ndarray
    state: list[Any] | None = None


#: one step of a lineage: (operator index, parameter, generator state before the step or None)
Step = tuple[int, Any, Any]
_UNUSED_RNG = np.random.default_rng(0)  # handed to deterministic operators, which never draw from it


def _apply_one(
    op: Operator, x: np.ndarray, ref: np.ndarray, param: Any, rng: np.random.Generator
) -> tuple[np.ndarray, Any]:
    """One image ``(1, C, H, W)`` through ``op``; an affine operator moves the reference too (same
    generator, after the image). Returns ``(x', ref')`` (``ref'`` None when the reference does not
    change)."""
    out = op(x, [param], rng)
    return out, (op(ref, [param], rng) if op.kind == "affine" else None)


def _generator(state: Any) -> np.random.Generator:
    """A generator in a recorded ``bit_generator.state``."""
    bits = getattr(np.random, state["bit_generator"])()
    bits.state = state
    return np.random.Generator(bits)


def replay(
    seed_image: np.ndarray, steps: Sequence[Step], operators: Sequence[Operator] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a mutant from its root seed and its steps: ``(image, reference)``, each ``(C, H, W)``.

    Bit-identical to the mutant :func:`mutate` emitted: deterministic operators compute every image on
    its own, and a stochastic one draws again from the generator state recorded before its image.
    The fuzzer keeps its queue as steps and rebuilds the images it no longer holds this way.
    """
    ops = tuple(operators) if operators is not None else default_operators()
    x = np.ascontiguousarray(seed_image, dtype=np.float32)[None]
    ref = x
    for k, param, state in steps:
        op = ops[int(k)]
        rng = _generator(state) if op.stochastic else _UNUSED_RNG
        x, moved = _apply_one(op, x, ref, param, rng)
        if moved is not None:
            ref = moved
    return x[0], ref[0]


def mutate(
    x: np.ndarray,
    ref: np.ndarray,
    affine_used: np.ndarray,
    l0_ref: np.ndarray,
    linf_ref: np.ndarray,
    rng: np.random.Generator,
    operators: Sequence[Operator] | None = None,
    alpha: float = ALPHA,
    beta: float = BETA,
    tries: int = TRIES,
    copy: bool = True,
) -> Mutants:
    """Mutate every row of ``x`` once under DeepHunter's constraint (paper Algorithm 2, spec A.5).

    All rows are mutated together: each try draws an operator and a parameter per pending row, applies
    each operator to its rows in one call, checks the constraint for the whole batch and retries the
    rows that failed.

    Parameters
    ----------
    x
        Current images ``(n, C, H, W)`` float32 in [0, 1] (repeat a parent to get several mutants).
    ref
        Their references (the root seed, or its affine-transformed version).
    affine_used
        ``(n,)`` bool: the lineage already used its affine operator.
    l0_ref, linf_ref
        ``(n,)`` distances the lineage had when its affine operator was applied (0 before that).
    rng
        Source of every random choice.
    operators
        The operators (default :func:`default_operators`).
    alpha, beta
        Constraint parameters: fraction of elements, fraction of the value range.
    tries
        Attempts per row before the mutation fails.
    copy
        ``False`` lets the result take over ``x`` and ``ref`` (float32 arrays the caller no longer
        needs, e.g. fresh ``np.repeat`` results) instead of copying them: two image batches less memory.
    """
    if x.ndim != 4:
        raise InvalidInputError(f"fuzz: mutations need image batches (N, C, H, W). Got shape {x.shape}.")
    if not (0.0 < alpha < 1.0 and 0.0 < beta < 1.0):
        raise InvalidInputError(
            f"fuzz: `alpha` and `beta` must be in (0, 1). Got {alpha} and {beta} instead."
        )
    ops = tuple(operators) if operators is not None else default_operators()
    n = len(x)
    size = int(np.prod(x.shape[1:]))
    pixel_ids = np.array([i for i, op in enumerate(ops) if op.kind == "pixel"], dtype=np.int64)
    all_ids = np.arange(len(ops), dtype=np.int64)
    out = Mutants(
        x=x.astype(np.float32, copy=copy),
        ref=ref.astype(np.float32, copy=copy),
        affine_used=np.asarray(affine_used, dtype=bool).copy(),
        l0_ref=np.asarray(l0_ref, dtype=np.int64).copy(),
        linf_ref=np.asarray(linf_ref, dtype=np.float32).copy(),
        op=np.full(n, -1, dtype=np.int64),
        param=[None] * n,
        ok=np.zeros(n, dtype=bool),
        state=[None] * n,
    )
    pending = np.arange(n)
    if pixel_ids.size == 0:
        # only affine operators: rows that used theirs cannot be mutated any further
        pending = pending[~out.affine_used]
    for _ in range(tries):
        if pending.size == 0:
            break
        used = out.affine_used[pending]
        u = rng.random(pending.size)
        choice = np.where(
            used,
            pixel_ids[np.minimum((u * max(pixel_ids.size, 1)).astype(np.int64), max(pixel_ids.size - 1, 0))]
            if pixel_ids.size
            else -1,
            all_ids[np.minimum((u * len(ops)).astype(np.int64), len(ops) - 1)],
        )
        v = rng.random(pending.size)
        accepted = np.zeros(pending.size, dtype=bool)
        for k, op in enumerate(ops):
            sel = np.flatnonzero(choice == k)
            if sel.size == 0:
                continue
            rows = pending[sel]
            pidx = np.minimum((v[sel] * len(op.params)).astype(np.int64), len(op.params) - 1)
            values = [op.params[j] for j in pidx]
            states: list[Any] = [None] * rows.size
            if op.stochastic:
                # image by image, in the order a batch call draws; the state before each image lets the
                # step be replayed on its own
                candidate = np.empty((rows.size, *x.shape[1:]), dtype=np.float32)
                for i, (r, val) in enumerate(zip(rows, values, strict=True)):
                    states[i] = rng.bit_generator.state
                    one, moved = _apply_one(op, x[r : r + 1], out.ref[r : r + 1], val, rng)
                    candidate[i] = one[0]
                    if moved is not None:
                        out.ref[r] = moved[0]
            else:
                candidate = op(x[rows], values, _UNUSED_RNG)
                if op.kind == "affine":
                    out.ref[rows] = op(out.ref[rows], values, _UNUSED_RNG)
            if op.kind == "affine":
                # semantics-preserving by assumption (conservative ranges): accepted without a pixel check
                good = np.ones(rows.size, dtype=bool)
            else:
                l0, linf = distances(out.ref[rows], candidate)
                after = out.affine_used[rows]
                l0_tot = np.where(after, out.l0_ref[rows] + l0, l0)
                linf_tot = np.where(after, np.maximum(out.linf_ref[rows], linf), linf)
                good = satisfies(l0_tot, linf_tot, size, alpha, beta)
                # before the affine operator the lineage's distance is simply the latest one
                keep = good & ~after
                out.l0_ref[rows[keep]] = l0[keep]
                out.linf_ref[rows[keep]] = linf[keep]
            done = rows[good]
            out.x[done] = candidate[good]
            out.op[done] = k
            for r, st in zip(done, (states[i] for i in np.flatnonzero(good)), strict=True):
                out.state[r] = st
            for r, val in zip(rows[good], np.asarray(values, dtype=object)[good], strict=True):
                out.param[r] = val
            if op.kind == "affine":
                out.affine_used[done] = True
            out.ok[done] = True
            accepted[sel[good]] = True
        pending = pending[~accepted]
    return out
