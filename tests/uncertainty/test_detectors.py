"""OOD scores and separation metrics against scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from roadworthy.errors import InvalidInputError
from roadworthy.uncertainty.detectors import (
    KNN,
    Energy,
    InputKNN,
    InputMahalanobis,
    IsolationForest,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    aupr,
    auroc,
    fpr_at_tpr,
    roc_points,
)

# small integer scores give many ties, the case where hand-written metrics usually go wrong
scores = st.lists(st.integers(-5, 5), min_size=1, max_size=40).map(lambda v: np.array(v, float))


def _labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.r_[np.zeros(len(a)), np.ones(len(b))]


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_auroc_and_aupr_match_sklearn(id_s: np.ndarray, ood_s: np.ndarray) -> None:
    both = np.r_[id_s, ood_s]
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(_labels(id_s, ood_s), both))
    # AUPR-In: in-distribution is the positive class, -score its confidence
    assert aupr(id_s, ood_s) == pytest.approx(average_precision_score(1 - _labels(id_s, ood_s), -both))


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_fpr95_is_the_lowest_fpr_reaching_tpr_95_on_sklearns_roc(id_s: np.ndarray, ood_s: np.ndarray) -> None:
    fpr, tpr, _ = roc_curve(1 - _labels(id_s, ood_s), -np.r_[id_s, ood_s], drop_intermediate=False)
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(fpr[tpr >= 0.95 - 1e-12].min())


def test_metrics_on_known_arrays() -> None:
    id_s, ood_s = np.arange(100.0), np.arange(50.0, 150.0)
    # ID and OOD overlap on 50..99: OOD loses 1,225 of the 10,000 pairs there and ties 50 (half each)
    assert auroc(id_s, ood_s) == pytest.approx(1 - (1225 + 25) / 10_000)
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(_labels(id_s, ood_s), np.r_[id_s, ood_s]))
    # 95% of ID accepted means scores <= 94: OOD 50..94 accepted, 45 of 100
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(0.45)
    assert auroc(np.zeros(5), np.ones(5)) == 1.0 and fpr_at_tpr(np.zeros(5), np.ones(5)) == 0.0
    assert auroc(np.ones(5), np.zeros(5)) == 0.0
    with pytest.raises(InvalidInputError, match="OOD scores"):
        auroc(np.array([]), np.ones(3))


def test_roc_points_run_from_origin_to_one_and_never_fall() -> None:
    rng = np.random.default_rng(0)
    pts = roc_points(rng.normal(size=300), rng.normal(1.0, size=200), 21)
    tpr = np.array(pts["tpr"])
    assert pts["fpr"][0] == 0.0 and tpr[-1] == 1.0
    assert np.all(np.diff(tpr) >= 0)


def test_logit_scores_follow_their_formulas() -> None:
    z = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p0 = np.exp(2) / (np.exp(2) + 2)
    np.testing.assert_allclose(MaxSoftmax().score(z), [-p0, -1 / 3])
    np.testing.assert_allclose(MaxLogit().score(z), [-2.0, 0.0])
    np.testing.assert_allclose(Energy().score(z), [-np.log(np.exp(2) + 2), -np.log(3)])
    np.testing.assert_allclose(Energy(temperature=2.0).score(z), -2 * np.log(np.exp(z / 2).sum(axis=1)))


def test_mahalanobis_matches_the_direct_formula() -> None:
    rng = np.random.default_rng(1)
    h = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    y = rng.integers(0, 3, 300)
    h += y[:, None] * 2.0
    det = Mahalanobis(ridge=0.0).fit(h, y)
    mu = np.stack([h[y == c].mean(0) for c in range(3)])
    r = h - mu[y]
    prec = np.linalg.inv(r.T @ r / len(h))
    q = rng.normal(size=(7, 4)) * 3
    want = np.min([np.einsum("ij,jk,ik->i", q - m, prec, q - m) for m in mu], axis=0)
    np.testing.assert_allclose(det.score(q), want, rtol=1e-6)
    assert det.n_fitted == 300


def test_knn_matches_brute_force_on_normalised_features() -> None:
    rng = np.random.default_rng(2)
    bank, q = rng.normal(size=(500, 6)), rng.normal(size=(9, 6))
    det = KNN(k=50).fit(bank)
    assert det.k_used == 5  # about 1% of a small bank
    nb = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    nq = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = np.linalg.norm(nq[:, None] - nb[None], axis=2)
    np.testing.assert_allclose(det.score(q), np.sort(d, axis=1)[:, 4], rtol=1e-5)
    with pytest.raises(InvalidInputError, match="`k` must be >= 1"):
        KNN(k=0)


def test_input_detectors_do_not_care_about_units() -> None:
    """Standardised input space: rescaling a column (dollars to cents) changes no score."""
    rng = np.random.default_rng(3)
    bank, q = rng.normal(size=(400, 4)), rng.normal(size=(30, 4))
    y = rng.integers(0, 2, 400)
    scale = np.array([1.0, 100.0, 0.01, 7.0])
    for make in (
        lambda: InputMahalanobis(),
        lambda: InputKNN(k=10),
        lambda: IsolationForest(trees=50, seed=1),
    ):
        plain = make().fit(bank, y).score(q)
        scaled = make().fit(bank * scale, y).score(q * scale)
        np.testing.assert_allclose(plain, scaled, rtol=1e-6, atol=1e-9)


def test_input_knn_matches_brute_force_in_standardised_space() -> None:
    rng = np.random.default_rng(4)
    bank, q = rng.normal(2.0, 3.0, size=(300, 5)), rng.normal(size=(7, 5))
    det = InputKNN(k=50).fit(bank)
    assert det.k_used == 3
    mu, sd = bank.mean(axis=0), bank.std(axis=0)
    d = np.linalg.norm((q - mu)[:, None] / sd - ((bank - mu) / sd)[None], axis=2)
    np.testing.assert_allclose(det.score(q), np.sort(d, axis=1)[:, 2], rtol=1e-5)


def test_input_detectors_flag_far_rows_and_survive_missing_values() -> None:
    rng = np.random.default_rng(5)
    bank = rng.normal(size=(500, 3))
    ident, far = rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 6.0
    holes = ident.copy()
    holes[::3, 1] = np.nan  # a missing value sits at the mean: scored, not NaN
    for det in (InputMahalanobis(), InputKNN(), IsolationForest(trees=100, seed=0)):
        det.fit(bank, np.zeros(500, int))
        assert auroc(det.score(ident), det.score(far)) > 0.99
        assert np.isfinite(det.score(holes)).all()
    with pytest.raises(InvalidInputError, match="`trees` must be >= 1"):
        IsolationForest(trees=0)
