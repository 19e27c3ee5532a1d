"""DeepHunter's constraint holds on every emitted mutant; affine operators at most once per lineage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.coverage import default_operators, make_operators, mutate
from roadworthy.coverage.mutations import ALPHA, BETA, distances
from roadworthy.errors import InvalidInputError

OPS = default_operators()


def _images(seed: int, n: int, channels: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth images with a bright blob, like real photos more than white noise
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.exp(-((yy - rng.random()) ** 2 + (xx - rng.random()) ** 2) * 8)
    x = base[None, None] * rng.random((n, channels, 1, 1)) + 0.1 * rng.random((n, channels, size, size))
    return np.clip(x, 0, 1).astype(np.float32)


def _lineage(x0: np.ndarray, rng: np.random.Generator, steps: int, alpha: float = ALPHA, beta: float = BETA):
    """Mutate ``x0`` ``steps`` times in a row; yield each step's state and the operator kinds so far."""
    n = len(x0)
    x, ref = x0.copy(), x0.copy()
    used = np.zeros(n, bool)
    l0 = np.zeros(n, np.int64)
    linf = np.zeros(n, np.float32)
    kinds: list[list[str]] = [[] for _ in range(n)]
    for _ in range(steps):
        m = mutate(x, ref, used, l0, linf, rng, OPS, alpha, beta)
        for i in np.flatnonzero(m.ok):
            kinds[i].append(OPS[m.op[i]].kind)
        yield x, ref, used, m, kinds
        ok = m.ok
        x = np.where(ok[:, None, None, None], m.x, x)
        ref = np.where(ok[:, None, None, None], m.ref, ref)
        used, l0, linf = (
            np.where(ok, m.affine_used, used),
            np.where(ok, m.l0_ref, l0),
            np.where(ok, m.linf_ref, linf),
        )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.sampled_from([1, 3]),
    size=st.sampled_from([8, 16, 32]),
    alpha=st.floats(0.005, 0.2),
    beta=st.floats(0.02, 0.4),
)
def test_every_mutant_satisfies_the_constraint(seed, channels, size, alpha, beta) -> None:
    x0 = _images(seed, 6, channels, size)
    rng = np.random.default_rng(seed)
    n_elem = channels * size * size
    for _x, _ref, _used, m, kinds in _lineage(x0, rng, steps=6, alpha=alpha, beta=beta):
        assert m.x.shape == x0.shape and m.x.dtype == np.float32
        assert m.x.min() >= 0.0 and m.x.max() <= 1.0
        for i in np.flatnonzero(m.ok):
            # at most one affine operator per lineage
            assert kinds[i].count("affine") <= 1
            if not m.affine_used[i]:
                # no affine operator yet: the reference is the seed itself, and the constraint holds
                np.testing.assert_array_equal(m.ref[i], x0[i])
                l0, linf = distances(x0[i : i + 1], m.x[i : i + 1])
                assert l0[0] < alpha * n_elem or linf[0] < beta
            elif OPS[m.op[i]].kind == "pixel":
                # after the affine operator the distances accumulate (paper Eq. 2)
                l0, linf = distances(m.ref[i : i + 1], m.x[i : i + 1])
                assert m.l0_ref[i] + l0[0] < alpha * n_elem or max(m.linf_ref[i], linf[0]) < beta


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([16, 32]))
def test_affine_operator_transforms_the_reference_too(seed, size) -> None:
    x0 = _images(seed, 8, 3, size)
    m = mutate(x0, x0, np.zeros(8, bool), np.zeros(8), np.zeros(8), np.random.default_rng(seed))
    for i in np.flatnonzero(m.ok):
        op = OPS[m.op[i]]
        if op.kind == "affine":
            again = op(x0[i : i + 1], [m.param[i]], np.random.default_rng(0))
            np.testing.assert_allclose(m.ref[i], again[0], atol=1e-6)
            np.testing.assert_array_equal(m.x[i], m.ref[i])  # seed == reference, so both moved alike
            assert m.affine_used[i]


def test_mutation_is_deterministic_under_its_generator() -> None:
    x0 = _images(0, 10, 3, 16)
    z = np.zeros(10)

    def run(seed: int):
        return mutate(x0, x0, z.astype(bool), z, z, np.random.default_rng(seed))

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.op.tolist() == b.op.tolist() and a.param == b.param
    assert not np.array_equal(a.x, c.x)


def test_parameter_sets_follow_the_spec_without_identities() -> None:
    params = {op.name: op.params for op in OPS}
    assert params["translation"] == (-3, -2, -1, 1, 2)
    assert params["scale"] == (0.7, 0.8, 0.9, 1.1)
    assert len(params["shear"]) == 11 and 0.0 not in params["shear"] and min(params["shear"]) == -0.6
    assert len(params["rotation"]) == 99 and 0 not in params["rotation"]
    assert params["contrast"] == (0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2)
    assert len(params["brightness"]) == 39 and 0 not in params["brightness"]
    assert len(params["blur"]) == 9
    assert {op.name for op in OPS if op.kind == "affine"} == {"translation", "scale", "shear", "rotation"}


def test_operators_are_adjustable() -> None:
    ops = make_operators(["rotation", "brightness"], params={"rotation": [10]})
    assert [op.name for op in ops] == ["rotation", "brightness"] and ops[0].params == (10,)
    with pytest.raises(InvalidInputError, match="unknown mutation operator 'fog'"):
        make_operators(["fog"])
    with pytest.raises(InvalidInputError, match="empty"):
        make_operators(params={"rotation": []})


def test_every_operator_keeps_shape_and_range() -> None:
    x = _images(1, 3, 3, 16)
    rng = np.random.default_rng(0)
    for op in OPS:
        for p in op.params[:3] + op.params[-2:]:
            out = op(x, [p] * 3, rng)
            assert out.shape == x.shape and out.dtype == np.float32, op.name
            assert out.min() >= 0.0 and out.max() <= 1.0, op.name
            assert not np.array_equal(out, x), f"{op.name}({p}) changed nothing"


def test_salt_is_white_and_translation_fills_with_black() -> None:
    x = np.full((1, 1, 8, 8), 0.5, np.float32)
    noise = next(op for op in OPS if op.name == "noise")
    out = noise(x, ["salt_pepper"], np.random.default_rng(0))
    assert (out == 1.0).any() and (out == 0.0).any()
    shift = next(op for op in OPS if op.name == "translation")
    moved = shift(x, [2], np.random.default_rng(0))
    assert (moved[0, 0, :2, :] == 0).all() and (moved[0, 0, 2:, 2:] == 0.5).all()


def test_replay_rebuilds_every_mutant_bit_for_bit() -> None:
    """A lineage kept as (operator, parameter, generator state) steps rebuilds its image and reference
    exactly, stochastic operators (noise, pixel change) and affine ones included."""
    from roadworthy.coverage.mutations import replay

    x0 = _images(3, 12, 3, 16)
    rng = np.random.default_rng(3)
    steps: list[list[tuple]] = [[] for _ in range(len(x0))]
    kinds_seen = set()
    for _, _, _, m, _ in _lineage(x0, rng, 6):
        for i in np.flatnonzero(m.ok):
            steps[i].append((int(m.op[i]), m.param[i], m.state[i]))
            kinds_seen.add(OPS[m.op[i]].name)
            rx, rref = replay(x0[i], steps[i], OPS)
            assert np.array_equal(rx, m.x[i])
            assert np.array_equal(rref, m.ref[i])
    assert {"noise", "pixel_change"} & kinds_seen and {
        "rotation",
        "scale",
        "shear",
        "translation",
    } & kinds_seen


def test_mutating_without_a_copy_gives_the_same_mutants() -> None:
    x0 = _images(5, 10, 3, 16)
    args = (np.zeros(10, bool), np.zeros(10, np.int64), np.zeros(10, np.float32))
    a = mutate(x0.copy(), x0.copy(), *args, np.random.default_rng(5), OPS)
    x, ref = x0.copy(), x0.copy()
    b = mutate(x, ref, *args, np.random.default_rng(5), OPS, copy=False)
    assert b.x is x and b.ref is ref  # taken over, not copied
    for field in ("x", "ref", "op", "ok", "affine_used", "l0_ref", "linf_ref"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.param == b.param
