"""Poisoned training data: a separate cluster inside one class that looks like another class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.backdoor.clusters import SIGNIFICANCE
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.integrity._embedding import EmbeddingShards, embedding, reduce_dims
from roadworthy.errors import InvalidInputError

if TYPE_CHECKING:
    from roadworthy.results import Example


@dataclass
class ClassScan:
    """What the scan of one class in one representation found."""

    label: int
    n: int
    members: np.ndarray  # training rows of the suspect group (ascending)
    relative_size: float
    silhouette: float
    source: int  # the other class the group resembles most (-1: none)
    resemblance: float  # share of the group whose nearest class mean is ``source``
    spectral_ratio: float  # top-1 / top-2 singular value of the centred class
    tau: np.ndarray  # spectral signature score of every member of the class (rows ``rows``)
    rows: np.ndarray
    partition: str  # "2-means" or "nearest class mean"


def scan_class(
    z: np.ndarray,
    y: np.ndarray,
    label: int,
    means: np.ndarray,
    n_components: int,
    seed: int,
    max_silhouette_samples: int = 2000,
) -> ClassScan:
    """Activation clustering and spectral signature of class ``label`` in representation ``z``.

    Two candidate splits of the class are scored by silhouette in its top ``n_components`` principal
    components: the 2-means split of activation clustering (Chen et al. 2018), and the group of members
    whose nearest class mean is another class (a poisoned group shows up as samples that look like a
    different class). The better-separated split is kept. The spectral signature (Tran et al. 2018) is
    the squared projection of every centred member on the top right singular vector.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows = np.flatnonzero(y == label)
    zc = z[rows]
    m = zc - zc.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    tau = (m @ vt[0]) ** 2
    ratio = float(s[0] / s[1]) if len(s) > 1 and s[1] > 0 else float("inf")
    red = m @ vt[: min(n_components, len(vt))].T

    rng = np.random.default_rng(seed)
    sub = rng.choice(len(rows), size=min(len(rows), max_silhouette_samples), replace=False)

    def sil(assign: np.ndarray) -> float:
        if assign.min() == assign.max() or min(assign[sub].sum(), (~assign[sub]).sum()) < 2:
            return -1.0
        return float(silhouette_score(red[sub], assign[sub].astype(int)))

    km = KMeans(n_clusters=2, n_init=3, random_state=seed).fit(red)
    small = np.argmin(np.bincount(km.labels_, minlength=2))
    split_km = km.labels_ == small

    # nearest class mean, with the class's own mean taken from its members (all of them)
    dist = ((zc[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    nearest = dist.argmin(axis=1)
    others = nearest[nearest != label]
    split_nm = np.zeros(len(rows), bool)
    if len(others):
        top_other = np.bincount(others).argmax()
        split_nm = nearest == top_other

    candidates = [("2-means", split_km, sil(split_km)), ("nearest class mean", split_nm, sil(split_nm))]
    name, split, best = max(candidates, key=lambda c: c[2])
    members = rows[split]
    # which other class the group resembles: nearest mean among the other classes
    if split.any():
        d_other = dist[split].copy()
        d_other[:, label] = np.inf
        votes = np.bincount(d_other.argmin(axis=1), minlength=len(means))
        source = int(votes.argmax())
        resemblance = float((nearest[split] == source).mean())
    else:
        source, resemblance = -1, 0.0
    return ClassScan(
        label=label,
        n=len(rows),
        members=members,
        relative_size=float(split.mean()),
        silhouette=best,
        source=source,
        resemblance=resemblance,
        spectral_ratio=ratio,
        tau=tau,
        rows=rows,
        partition=name,
    )


@dataclass
class Suspicion:
    """A class called poisoned: the view that decided, its scan, score and the ranked suspects."""

    view: str
    scan: ClassScan
    score: float
    members: np.ndarray  # training rows, most suspicious first
    tau: np.ndarray  # their spectral signature scores
    votes: np.ndarray  # in how many views each was in the group


def robust_z(values: np.ndarray, floor: float) -> np.ndarray:
    """(value - median) / (1.4826 * MAD), with the scale floored at ``floor`` so a few near-equal
    classes do not turn tiny differences into huge scores."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    return (v - med) / max(mad, floor)


@register
class Poisoning(EmbeddingShards, Check):
    """Backdoor and targeted label-flip poisoning, found per class in the training data.

    Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
    Clustering", 2018) and spectral signatures (Tran, Li & Madry, "Spectral Signatures in Backdoor
    Attacks", NeurIPS 2018). Threat model: an attacker adds samples of a source class (with or without a
    trigger patch) labelled as a target class, so the model learns "stop sign -> speed limit". Such
    samples form a compact group inside the target class that looks like another class. Each class is
    scanned in the model's penultimate features and in the (shrunk) inputs: a 2-means split and a
    "nearest class mean is another class" split, scored by silhouette; the spectral signature ranks
    members. A class is called poisoned when its suspect group is small (< ``max_relative_size`` of the
    class), mostly resembles one other class, and separates far better than the other classes' groups
    (robust z-score of the silhouette across classes >= ``z_threshold``). Source-agnostic backdoors
    (a trigger on samples of every other class) are found by :func:`roadworthy.backdoor.scan_training_data`
    (SCAn's untangling statistic): a class is called poisoned when its score reaches ``z_threshold`` and
    the suspect group's shared pattern works as a trigger on other classes' inputs significantly more
    often than any other class's group pattern works for its own class (one-sided binomial test against
    the largest other class's rate, at ``SIGNIFICANCE`` / number of classes, with the lower end of the
    success's 95% interval at least ``min_trigger_success``), or, when no trigger
    can be pasted (a blended trigger), when its score reaches the library's ``SCORE_THRESHOLD``, at
    least ``min_foreign`` of the group look like other classes, and significantly more of it than of any
    other class's group (the same binomial test). ``integrity.poisoning.score``
    is the largest such z-score over classes (0 when no class has a small group that resembles another
    class); ``suspect_count`` the number of samples in groups of flagged classes. ``details.review`` lists
    the rows to review: the flagged classes' suspects, or, when no class is named, the label screen
    (:meth:`_review`, calibrated on the labelled evaluation data at ``screen_level``), which names no class.
    """

    id = "integrity.poisoning"
    title = "Data poisoning (activation clustering, spectral signatures)"
    requires = Requires(capabilities=frozenset({"features"}), train_data=True)

    @dataclass(frozen=True)
    class Params:
        n_components: int = 10
        max_relative_size: float = 0.35
        min_resemblance: float = 0.5
        z_threshold: float = 2.0
        min_silhouette: float = 0.3
        min_group: int = 5
        min_foreign: float = 0.5
        min_trigger_success: float = 0.2
        min_class_size: int = 20
        max_dims: int = 64
        n_examples: int = 4
        screen_level: float = 0.01

    Params: ClassVar[type] = Params  # type: ignore[no-redef]
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {}

    def measure(self, ctx: Context) -> Outcome:
        p = self.params
        if not 0.0 < p.max_relative_size <= 0.5:
            raise InvalidInputError(
                f"`max_relative_size` must be in (0, 0.5]. Got {p.max_relative_size} instead."
            )
        if not 0.0 < p.screen_level < 1.0:
            raise InvalidInputError(f"`screen_level` must be in (0, 1). Got {p.screen_level} instead.")
        train = ctx.train_data
        assert train is not None
        y = np.asarray(train.y, dtype=np.int64)
        k = ctx.n_classes
        labels = [c for c in range(k) if (y == c).sum() >= p.min_class_size]
        emb = embedding(ctx)
        views = {
            "features": reduce_dims(
                emb.train_features, p.max_dims, ctx.random_state(self.id, "features"), per_column=True
            )
        }
        if train.modality == "image":
            shrunk = emb.train_shrunk
            views["inputs"] = reduce_dims(
                shrunk, p.max_dims, ctx.random_state(self.id, "inputs"), per_column=False
            )

        scans: dict[str, list[ClassScan]] = {}
        with ctx.progress.task("poisoning: scanning classes", total=len(views) * len(labels)) as t:
            for view, z in views.items():
                means = np.stack(
                    [
                        z[y == c].mean(axis=0) if (y == c).any() else np.full(z.shape[1], np.inf)
                        for c in range(k)
                    ]
                )
                scans[view] = []
                for c in labels:
                    seed = ctx.random_state(self.id, view, c)
                    scans[view].append(scan_class(z, y, c, means, p.n_components, seed=seed))
                    t.advance()

        table, lookalikes = self._decide(scans, labels, ctx)
        probs = self._out_of_sample(ctx, y)
        flagged = self._confirm_flips(lookalikes, y, probs, table)
        flagged += self._backdoors(ctx, y, {f.scan.label for f in flagged}, table)
        flagged += self._flips(ctx, y, probs, {f.scan.label for f in flagged}, table)
        pooled: dict[str, Any] = {}
        if train.modality == "image" and np.asarray(train.x).ndim == 4:
            flagged += self._pooled(ctx, y, probs, {f.scan.label for f in flagged}, pooled)
        out = self._outcome(ctx, scans, table, flagged, len(y))
        if pooled:
            out.details["pooled_trigger"] = pooled
        self._combine(ctx, out, flagged)
        self._review(ctx, out, y, probs)
        return out

    def _review(self, ctx: Context, out: Outcome, y: np.ndarray, probs: np.ndarray) -> None:
        """The rows a reviewer should look at, with or without a class verdict (``details.review``).

        With a verdict, the named classes' suspects (``details.indices``), followed by the screen's rows of
        the classes named by label disagreement (their verdict rests on the same evidence: flipped rows the
        out-of-sample classifier calls a third class). Without a verdict, the *label screen*:
        the rows that the out-of-sample classifier (:meth:`_out_of_sample`, which never saw the row) calls
        another class, with a label probability that is rare on clean data. "Rare" is calibrated on the
        labelled evaluation data, which the attacker did not touch: the same kind of classifier, fitted on
        the whole training representation, scores every evaluation row's probability of its true label;
        a training row's conformal p-value is ``(1 + #{evaluation rows scoring at most as low}) /
        (n_eval + 1)`` and it is listed when that is at most ``screen_level``. Clean rows are then listed
        at most at about that rate (fewer: the network has seen its training rows, so their features sit
        closer to their class than unseen rows' do), whatever the data and model. A dirty-label poisoning
        (BadNets, blended, label flips: samples of other classes relabelled) too small for any class-level
        test still puts most of its rows there, beside the data's ordinary label noise; the screen names no
        class and raises no verdict. It is reported beside a verdict too.
        """
        p = self.params
        given = probs[np.arange(len(y)), y]
        ref = self._reference_scores(ctx, y)
        screen: dict[str, Any] = {"level": p.screen_level}
        disputed = np.zeros(0, dtype=np.int64)
        if ref is None or len(ref) + 1 < 1.0 / p.screen_level:
            screen["skipped"] = (
                f"needs at least {int(np.ceil(1.0 / p.screen_level)) - 1} labelled evaluation rows to "
                f"calibrate a level of {p.screen_level:g}"
            )
        else:
            ref = np.sort(ref)
            pval = (1.0 + np.searchsorted(ref, given, side="right")) / (len(ref) + 1.0)
            disputed = np.flatnonzero((probs.argmax(axis=1) != y) & (pval <= p.screen_level))
            disputed = disputed[np.argsort(given[disputed], kind="stable")]
            screen.update(
                {
                    "rows": disputed.tolist(),
                    "given_label_prob": [float(f"{v:.3g}") for v in given[disputed]],
                    "p": [round(float(v), 5) for v in pval[disputed]],
                    "predicted": [int(v) for v in probs[disputed].argmax(axis=1)],
                    "calibration_rows": len(ref),
                }
            )
        verdict_rows = list(out.details["indices"])
        use_screen = not verdict_rows and "rows" in screen
        rows = disputed.tolist() if use_screen else verdict_rows
        source = "label screen" if use_screen else "verdict suspects"
        # a class named by label disagreement: its screened rows are the same evidence, calibrated
        by_labels = {
            v["label"]
            for v in out.details["verdicts"]
            if v["evidence"] == "label disagreement" or "confirmed by label disagreement" in v["split"]
        }
        named_rows = set(verdict_rows)
        extra = [int(i) for i in disputed if y[i] in by_labels and int(i) not in named_rows]
        if extra:
            rows = rows + extra
            source += " and the screened rows of classes named by label disagreement"
        out.details["review"] = {"rows": rows, "source": source, "screen": screen}
        if use_screen and len(disputed):
            out.summary = out.summary.rstrip(".") + (
                f"; {len(disputed)} training rows are listed for review: a classifier that never saw them "
                f"calls them another class, with a label probability that at most {p.screen_level:.0%} of "
                "the labelled evaluation rows reach; no class is named by them."
            )

    def _reference_scores(self, ctx: Context, y: np.ndarray) -> np.ndarray | None:
        """The probability of its true label for every labelled evaluation row, from the out-of-sample
        classifier's kind (:class:`~roadworthy.checks.integrity.label_issues.TrimmedRDA`) fitted on all
        training rows, in the training representation (the same standardisation and principal
        components, fitted on the training rows only). ``None`` without evaluation labels."""
        from sklearn.decomposition import PCA

        from roadworthy.checks.integrity.label_issues import TrimmedRDA

        data = ctx.data
        if data is None or data.y is None or len(data.y) == 0:
            return None
        y_ref = np.asarray(data.y, dtype=np.int64)
        k = ctx.n_classes
        if y_ref.min() < 0 or y_ref.max() >= k:
            return None
        emb = embedding(ctx)
        if emb.train_features is None or emb.eval_features is None:
            return None
        tr = np.asarray(emb.train_features, dtype=np.float32).reshape(len(y), -1)
        te = np.asarray(emb.eval_features, dtype=np.float32).reshape(len(y_ref), -1)
        mu = tr.mean(axis=0)
        sd = (tr - mu).std(axis=0)
        sd[sd == 0] = 1.0
        a, b = (tr - mu) / sd, (te - mu) / sd
        dims = self.params.max_dims
        if a.shape[1] > dims and len(a) > dims:
            seed = ctx.random_state(f"integrity.train_representation.{dims}")
            pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(a)
            a, b = pca.transform(a), pca.transform(b)
        scale = float(np.sqrt((a**2).sum(axis=1).mean() / max(1, a.shape[1]))) or 1.0
        clf = TrimmedRDA().fit(a / scale, y)
        pb = np.full((len(b), k), 1e-9)
        pb[:, clf.classes_] = clf.predict_proba(b / scale)
        return pb[np.arange(len(y_ref)), y_ref]

    def _combine(self, ctx: Context, out: Outcome, flagged: list[Suspicion]) -> None:
        """One score per class over the data-level methods and, when ``integrity.backdoor_scan`` ran
        earlier in the session, the model-level Neural Cleanse anomaly index (both are robust z-scores
        across classes: distance from the median in units of 1.4826 MAD), with the method that raised it.
        A verdict stays with the data-level rules; the model scan's own verdict is noted beside it."""
        from roadworthy.checks.integrity.backdoor import RECOVERED

        scan = ctx.cached(RECOVERED, lambda: None)  # left by integrity.backdoor_scan when it ran first
        verdict_scores: dict[int, tuple[float, str]] = {}
        for f in flagged:
            verdict_scores.setdefault(f.scan.label, (f.score, f.view))
        for row in out.details["classes"]:
            c = row["label"]
            cands = [(row[v]["score"], f"look-alike group ({v})") for v in out.details["views"]]
            if "untangling" in row:
                cands.append((row["untangling"]["score"], row["untangling"]["method"]))
            if c in verdict_scores:
                cands.append(verdict_scores[c])
            if scan is not None and c in scan["anomaly_index"]:
                cands.append((scan["anomaly_index"][c], "neural cleanse anomaly index (model-level)"))
            score, method = max(cands, key=lambda sm: sm[0])
            row["combined"] = {"score": round(float(score), 3), "method": method}
        if scan is None:
            return
        out.details["model_scan"] = {
            "suspect_classes": [ctx.class_name(c) for c in scan["suspects"]],
            "anomaly_index": {ctx.class_name(c): round(a, 3) for c, a in scan["anomaly_index"].items()},
        }
        for v in out.details["verdicts"]:
            c = v["label"]
            v["model_scan"] = {
                "anomaly_index": round(scan["anomaly_index"].get(c, float("nan")), 3),
                "flagged": c in scan["suspects"],
            }
        agree = [v["class"] for v in out.details["verdicts"] if v["model_scan"]["flagged"]]
        if agree:
            out.summary = out.summary.rstrip(".") + (
                f"; the model-level scan (Neural Cleanse) names {', '.join(agree)} too."
            )

    def _pooled(
        self, ctx: Context, y: np.ndarray, probs: np.ndarray, done: set[int], report: dict[str, Any]
    ) -> list[Suspicion]:
        """All-to-all backdoors: one input pattern shared by label disagreements of many classes
        (:func:`roadworthy.backdoor.pooled.pooled_trigger`). Significant at ``SIGNIFICANCE`` / (patterns
        tested x classes) with at least ``min_group`` held-out disagreeing carriers in excess of the base
        rate; every class holding a carrier that disagrees with its label is named, its carriers the
        suspects."""
        from scipy.stats import norm

        from roadworthy.backdoor.pooled import pooled_trigger

        p = self.params
        train = ctx.train_data
        assert train is not None
        pred = probs.argmax(axis=1)
        # rows given or predicted as an already flagged class are explained by that verdict (a flip of
        # half the 1s to 0 leaves the other 1s ambiguous too), so they stay out of the pooled search
        keep = np.flatnonzero(~np.isin(y, list(done)) & ~np.isin(pred, list(done)))
        found = pooled_trigger(
            train.x, y, pred, p.min_group, seed=ctx.random_state(self.id, "pooled"), rows=keep
        )
        if found is None:
            return []
        k = len(np.unique(y))
        alpha = SIGNIFICANCE / max(1, found.n_tested * k)
        excess = found.held_out_disagreeing - found.held_out * found.base_rate
        significant = found.p_value < alpha and excess >= p.min_group
        report.update(
            {
                "carriers": len(found.carriers),
                "classes": {ctx.class_name(c): n for c, n in found.classes.items()},
                "held_out": found.held_out,
                "held_out_disagreeing": found.held_out_disagreeing,
                "base_rate": round(found.base_rate, 4),
                "p": float(f"{found.p_value:.3g}"),
                "patterns_tested": found.n_tested,
                "significant": bool(significant),
            }
        )
        if not significant:
            return []
        how = (
            f"pooled trigger: {len(found.carriers)} samples of {len(found.classes)} classes carry one pattern; "
            f"{found.held_out_disagreeing} of its {found.held_out} held-out carriers disagree with their "
            f"labels out of sample (base rate {found.base_rate:.1%}, p={found.p_value:.2g})"
        )
        score = float(min(norm.isf(max(found.p_value, 1e-300)), 40.0))
        carriers = found.carriers
        d = carriers[pred[carriers] != y[carriers]]
        out = []
        for c in sorted({int(v) for v in y[d]} - done):
            rows = np.flatnonzero(y == c)
            members = carriers[y[carriers] == c]
            tau = np.zeros(len(rows))
            tau[np.searchsorted(rows, members)] = 1.0
            cs = ClassScan(
                label=c,
                n=len(rows),
                members=np.sort(members),
                relative_size=len(members) / len(rows),
                silhouette=float("nan"),
                source=-1,
                resemblance=0.0,
                spectral_ratio=float("nan"),
                tau=tau,
                rows=rows,
                partition=how,
            )
            out.append(
                Suspicion(
                    view="pooled trigger",
                    scan=cs,
                    score=score,
                    members=members,
                    tau=np.ones(len(members)),
                    votes=np.ones(len(members)),
                )
            )
        return out

    def _out_of_sample(self, ctx: Context, y: np.ndarray) -> np.ndarray:
        """Out-of-sample class probabilities of every training row (5-fold trimmed RDA on the training
        representation, as in ``integrity.label_issues``)."""
        from roadworthy.checks.integrity._embedding import train_representation
        from roadworthy.checks.integrity.label_issues import out_of_sample_probs

        z, _ = train_representation(ctx, 64)
        probs, _ = out_of_sample_probs(z, y, ctx.n_classes, 5, seed=ctx.random_state(self.id, "folds"))
        return probs

    def _confirm_flips(
        self, lookalikes: list[Suspicion], y: np.ndarray, probs: np.ndarray, table: list[dict[str, Any]]
    ) -> list[Suspicion]:
        """Keep a look-alike verdict only when the labels of its class disagree with an out-of-sample
        classifier in the proposed (source -> class) cell far more than other classes' cells do.

        A group inside class ``t`` that resembles class ``s`` is a label flip only if its samples *are*
        ``s``-like to a classifier that never saw them; clean classes hold look-alike groups too (road
        signs share shapes and colours), whose labels an out-of-sample classifier agrees with. The
        cell was proposed by the look-alike scan, so one test per verdict at ``SIGNIFICANCE``
        (:func:`roadworthy.backdoor.pairs.pair_test`), with at least ``min_group`` samples in excess of
        the null. The suspects become the cell's rows (labelled ``t``, predicted ``s``).
        """
        from roadworthy.backdoor.pairs import pair_test

        p = self.params
        by_label = {row["label"]: row for row in table}
        out = []
        for f in lookalikes:
            s = f.scan
            test = pair_test(y, probs, s.label, s.source, p.min_class_size)
            ok = test.p_value < SIGNIFICANCE and test.excess >= p.min_group
            by_label[s.label]["lookalike_confirmation"] = {**_pair_row(test), "confirmed": bool(ok)}
            if not ok:
                continue
            tau = s.tau[np.searchsorted(s.rows, test.rows)]
            cs = ClassScan(
                **{
                    **s.__dict__,
                    "members": np.sort(test.rows),
                    "partition": f"{s.partition}, confirmed by {_pair_text(test)}",
                }
            )
            out.append(
                Suspicion(
                    view=f.view, scan=cs, score=f.score, members=test.rows, tau=tau, votes=np.ones(len(tau))
                )
            )
        return out

    def _flips(
        self, ctx: Context, y: np.ndarray, probs: np.ndarray, done: set[int], table: list[dict[str, Any]]
    ) -> list[Suspicion]:
        """Poisoned labels found by out-of-sample label disagreement alone
        (:mod:`roadworthy.backdoor.pairs`), in two forms, each at ``SIGNIFICANCE`` / number of classes
        and with at least ``min_group`` samples in excess of its null:

        * a targeted flip (one source): the class's largest (given, predicted) cell against the other
          classes' cells (:func:`~roadworthy.backdoor.pairs.flip_pairs`);
        * an all-to-one poisoning (many sources: BadNets, blended): the class's share of rows predicted
          as any other class against the other classes' shares
          (:func:`~roadworthy.backdoor.pairs.class_disagreements`).
        """
        from roadworthy.backdoor.pairs import class_disagreements, flip_pairs

        p = self.params
        pairs = flip_pairs(y, probs, p.min_class_size)
        rows_of = class_disagreements(y, probs, p.min_class_size)
        by_label = {row["label"]: row for row in table}
        for f in pairs:
            if f.target in by_label:
                by_label[f.target]["label_pairs"] = _pair_row(f)
        for g in rows_of:
            if g.target in by_label:
                by_label[g.target]["label_disagreement"] = {
                    "count": g.count,
                    "n": g.n,
                    "null_rate": round(g.null_rate, 4),
                    "null_class": g.null_class,
                    "p": float(f"{g.p_value:.3g}"),
                    "excess": round(g.excess, 1),
                }
        out: list[Suspicion] = []
        done = set(done)
        for found, route in ((pairs, "pair"), (rows_of, "class")):
            alpha = SIGNIFICANCE / max(1, len(found))
            for f in sorted(found, key=lambda f: f.p_value):  # type: ignore[attr-defined]
                if f.target in done or f.p_value >= alpha or f.excess < p.min_group:
                    continue
                done.add(f.target)
                out.append(self._disagreement_verdict(f, y, probs, route))
        return out

    @staticmethod
    def _disagreement_verdict(f: Any, y: np.ndarray, probs: np.ndarray, route: str) -> Suspicion:
        """A verdict from a significant :class:`FlipPair` (``route="pair"``) or
        :class:`ClassDisagreement` (``"class"``); suspects ranked by how little the out-of-sample
        classifier believes their given label."""
        from scipy.stats import norm

        rows = np.flatnonzero(y == f.target)
        conf = 1.0 - probs[f.rows, f.target]
        tau = np.zeros(len(rows))
        tau[np.searchsorted(rows, f.rows)] = conf
        source = f.source if route == "pair" else -1
        cs = ClassScan(
            label=f.target,
            n=f.n,
            members=np.sort(f.rows),
            relative_size=f.count / max(1, f.n),
            silhouette=float("nan"),
            source=source,
            resemblance=1.0 if route == "pair" else 0.0,
            spectral_ratio=float("nan"),
            tau=tau,
            rows=rows,
            partition=_pair_text(f) if route == "pair" else _class_text(f),
        )
        return Suspicion(
            view="label disagreement",
            scan=cs,
            score=float(min(norm.isf(max(f.p_value, 1e-300)), 40.0)),
            members=f.rows,
            tau=conf,
            votes=np.ones(len(f.rows)),
        )

    def _backdoors(
        self, ctx: Context, y: np.ndarray, done: set[int], table: list[dict[str, Any]]
    ) -> list[Suspicion]:
        """Source-agnostic backdoors (:func:`roadworthy.backdoor.scan_training_data`): a class is called
        poisoned only when its untangling score is high **and** the suspect group's common pattern works
        as a trigger on other classes' inputs (a separable group with no working trigger is not a verdict)."""
        from roadworthy.backdoor import SCORE_THRESHOLD, SIGNIFICANCE, scan_training_data

        p = self.params
        train = ctx.train_data
        assert train is not None
        image = train.modality == "image"
        scan = scan_training_data(
            y,
            features=embedding(ctx).train_features,
            x=train.x if image else None,
            model=ctx.model if image else None,
            max_dims=min(p.max_dims, 32),
            min_class_size=p.min_class_size,
            seed=ctx.random_state(self.id, "untangling"),
            min_success=p.min_trigger_success,
        )
        by_label = {row["label"]: row for row in table}
        for f in scan.classes:
            if f.label in by_label:
                by_label[f.label]["untangling"] = {
                    "score": round(f.score, 3),
                    "method": f.method,
                    "group_size": len(f.suspects),
                    "chosen_by": f.chosen_by,
                    "trigger_success": None
                    if f.trigger_success is None
                    else round(f.trigger_success.rate, 4),
                    "trigger_null": None if f.trigger_null is None else round(f.trigger_null, 4),
                    "trigger_p": None if f.trigger_p is None else float(f"{f.trigger_p:.3g}"),
                    "foreign_share": round(f.foreign_share, 4),
                    "foreign_null": None if f.foreign_null is None else round(f.foreign_null, 4),
                    "foreign_p": None if f.foreign_p is None else float(f"{f.foreign_p:.3g}"),
                }
        alpha = SIGNIFICANCE / max(1, len(scan.classes))
        out = []
        for f in sorted(scan.classes, key=lambda f: -f.score):
            c = f.label
            if c in done or len(f.suspects) < p.min_group:
                continue
            # the trigger test: the group's pattern sends significantly more clean inputs of other classes
            # to the class than any other class's group pattern does to its own (Bonferroni over classes)
            # and an effect worth the name: the lower end of the success's 95% interval reaches
            # ``min_trigger_success`` (a pattern of clean digits sending 3% of 8s to class 1 beats a null of
            # 0 hits, but is a shared shape, not a backdoor; clean classes' group patterns reached at most
            # 0.07 on the benchmark's clean twins, pasted 2% BadNets groups 0.3 and more)
            confirmed = (
                f.trigger_p is not None
                and f.trigger_p < alpha
                and f.trigger_success is not None
                and f.trigger_success.ci_low >= p.min_trigger_success
            )
            # two routes to a verdict: a separable group whose shared pattern works as a trigger (two
            # independent pieces of evidence, so the score needs only the check's z cut), or, with no
            # trigger to paste (blended triggers cover the whole image), a strongly separable group whose
            # members look like other classes (Chen et al.'s relabel intuition, measured in the inputs)
            if confirmed and f.score >= p.z_threshold:
                how = (
                    f"{f.method}, confirmed by trigger ({f.trigger_success.rate:.0%} success vs at most "  # type: ignore[union-attr]
                    f"{f.trigger_null:.0%} for other classes' groups, p={f.trigger_p:.2g})"
                )
            elif (
                f.score >= max(SCORE_THRESHOLD, p.z_threshold)
                and f.foreign_share >= p.min_foreign
                and f.foreign_p is not None
                and f.foreign_p < alpha
            ):
                # and more of them than in any other class's group (the same binomial test as the trigger's)
                how = (
                    f"{f.method}, {f.foreign_share:.0%} of the group look like other classes (at most "
                    f"{f.foreign_null:.0%} in other classes' groups, p={f.foreign_p:.2g})"
                )
            else:
                continue
            rows = np.flatnonzero(y == c)
            tau = np.zeros(len(rows))
            tau[np.searchsorted(rows, f.suspects)] = np.maximum(f.suspect_scores + 0.5, 0.0) ** 2
            cs = ClassScan(
                label=c,
                n=f.n,
                members=np.sort(f.suspects),
                relative_size=f.relative_size,
                silhouette=float("nan"),
                source=f.resembles,
                resemblance=f.resemblance,
                spectral_ratio=float("nan"),
                tau=tau,
                rows=rows,
                partition=how,
            )
            out.append(
                Suspicion(
                    view=f.method,
                    scan=cs,
                    score=f.score,
                    members=f.suspects,
                    tau=tau[np.searchsorted(rows, f.suspects)],
                    votes=np.ones(len(f.suspects)),
                )
            )
        return out

    def _decide(
        self, scans: dict[str, list[ClassScan]], labels: list[int], ctx: Context
    ) -> tuple[list[dict[str, Any]], list[Suspicion]]:
        p = self.params
        table: list[dict[str, Any]] = [{"label": c, "class": ctx.class_name(c)} for c in labels]
        groups: list[tuple[str, ClassScan, float]] = []
        for view, per_class in scans.items():
            sil = np.array([s.silhouette for s in per_class])
            z_sil = robust_z(sil, floor=0.03)
            z_ratio = robust_z(np.log([max(s.spectral_ratio, 1.0) for s in per_class]), floor=0.05)
            for row, s, zs, zr in zip(table, per_class, z_sil, z_ratio, strict=False):
                eligible = (
                    len(s.members) >= max(p.min_group, 0.01 * s.n)
                    and s.source >= 0
                    and s.relative_size <= p.max_relative_size
                    and s.resemblance >= p.min_resemblance
                )
                row[view] = {
                    "relative_size": round(s.relative_size, 4),
                    "silhouette": round(s.silhouette, 4),
                    "silhouette_z": round(float(zs), 3),
                    "spectral_ratio": round(s.spectral_ratio, 4),
                    "spectral_ratio_z": round(float(zr), 3),
                    "split": s.partition,
                    "resembles": ctx.class_name(s.source) if s.source >= 0 else None,
                    "resemblance": round(s.resemblance, 3),
                    "group_size": len(s.members),
                }
                score = float(zs) if eligible else 0.0
                row[view]["score"] = round(score, 3)
                if eligible and s.silhouette >= p.min_silhouette:
                    groups.append((view, s, score))
        # one verdict per class, from the view with the strongest evidence; its suspects are the union of the
        # groups that point to the same source class in every view (a backdoor may split off in one view
        # only partly), members found in more views first
        by_class: dict[int, list[tuple[str, ClassScan, float]]] = {}
        for view, s, score in groups:
            by_class.setdefault(s.label, []).append((view, s, score))
        verdicts: list[Suspicion] = []
        for found in by_class.values():
            view, s, score = max(found, key=lambda f: f[2])
            if score < p.z_threshold:
                continue
            agreeing = [g for _, g, _ in found if g.source == s.source]
            votes = np.zeros(s.n)
            for g in agreeing:
                votes[np.searchsorted(s.rows, g.members)] += 1
            in_group = np.flatnonzero(votes > 0)
            order = np.lexsort((-s.tau[in_group], -votes[in_group]))
            members = s.rows[in_group[order]]
            verdicts.append(
                Suspicion(
                    view=view,
                    scan=s,
                    score=score,
                    members=members,
                    tau=s.tau[in_group[order]],
                    votes=votes[in_group[order]],
                )
            )
        return table, sorted(verdicts, key=lambda v: -v.score)

    def _outcome(
        self,
        ctx: Context,
        scans: dict[str, list[ClassScan]],
        table: list[dict[str, Any]],
        flagged: list[Suspicion],
        n: int,
    ) -> Outcome:
        p = self.params
        suspects: list[int] = []
        scores: list[float] = []
        votes: list[int] = []
        verdicts = []
        for f in flagged:
            s, view, score = f.scan, f.view, f.score
            suspects.extend(f.members.tolist())
            scale = float(np.median(s.tau)) or 1.0
            scores.extend(np.round(f.tau / scale, 3).tolist())
            votes.extend(f.votes.astype(int).tolist())
            verdicts.append(
                {
                    "class": ctx.class_name(s.label),
                    "label": s.label,
                    "n_suspects": len(f.members),
                    "class_size": s.n,
                    "resembles": ctx.class_name(s.source) if s.source >= 0 else None,
                    "resembles_label": s.source,
                    "evidence": view,
                    "split": s.partition,
                    "silhouette": None if np.isnan(s.silhouette) else round(s.silhouette, 4),
                    "silhouette_z": round(score, 3),
                    "relative_size": round(s.relative_size, 4),
                }
            )
        all_scores = [row[v]["score"] for row in table for v in scans] + [f.score for f in flagged]
        score_metric = max([0.0, *all_scores])
        if verdicts:
            v = verdicts[0]
            summary = (
                f"class {v['class']} looks poisoned: {v['n_suspects']} samples labelled {v['class']} look "
                f"like {v['resembles'] or 'other classes'} to a classifier that never saw them ({v['split']})"
                if v["split"].startswith("label disagreement")
                else f"{len(verdicts)} class(es) look poisoned by one trigger across classes ({v['split']})"
                if v["split"].startswith("pooled trigger")
                else f"class {v['class']} looks poisoned: {v['n_suspects']} suspects form a separate cluster "
                + (
                    f"whose shared pattern works as a trigger ({v['split']})"
                    if "confirmed by trigger" in v["split"]
                    else f"of samples drawn from other classes ({v['split']})"
                    if "look like other classes" in v["split"]
                    else f"(most resemble {v['resembles']})"
                )
            )
            if len(verdicts) > 1:
                summary += f"; {len(verdicts) - 1} more class(es) flagged"
            summary += "."
        else:
            summary = (
                f"no class of {len(table)} scanned holds a separate cluster that looks like another class "
                f"(largest score {score_metric:.1f}, threshold {p.z_threshold:g})."
            )
        details = {
            "suspect_classes": [v["class"] for v in verdicts],
            "indices": suspects,
            "scores": scores,
            "score": "spectral signature (squared projection on the class's top singular vector) / class "
            "median; for a verdict by label disagreement, the out-of-sample probability of the source class",
            "views_agreeing": votes,
            "verdicts": verdicts,
            "classes": table,
            "views": list(scans),
            "n_samples": n,
        }
        if table and scans:
            details[evidence.KEY] = [_scores_evidence(table, list(scans), p.z_threshold)]
        examples = [ex for f in flagged[:2] for ex in _examples(ctx, f, p.n_examples)]
        metrics = {
            "integrity.poisoning.suspect_count": float(len(suspects)),
            "integrity.poisoning.score": float(score_metric),
        }
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)


def _scores_evidence(table: list[dict[str, Any]], views: list[str], threshold: float) -> dict[str, Any]:
    """Per class and view, the separation z-score against the threshold, as a bar chart."""
    return evidence.bars(
        "Per class: how much better its look-alike group separates than other classes' (robust z of "
        "the silhouette; 0 = no small group resembling another class)",
        [r["class"] for r in table],
        {view: [r[view]["score"] for r in table] for view in views},
        "separation z-score",
        hline=threshold,
    )


def _examples(ctx: Context, f: Suspicion, n_examples: int) -> list[Example]:
    from roadworthy.results import Example, ExampleImage

    train = ctx.train_data
    assert train is not None
    if train.modality != "image":
        return []
    s = f.scan
    suspects = f.members[:n_examples]
    clean_rows = np.setdiff1d(s.rows, f.members)
    clean_tau = s.tau[np.searchsorted(s.rows, clean_rows)]
    clean = clean_rows[np.argsort(clean_tau, kind="stable")][: len(suspects)]  # most typical members
    out = []
    for i, j in zip(suspects, clean, strict=False):
        out.append(
            Example(
                title=f"class {ctx.class_name(s.label)}: suspect #{int(i)} beside a typical member #{int(j)}",
                label=ctx.class_name(s.label),
                original=evidence.png_data_uri(train.x[i]),
                original_prediction=f"resembles {ctx.class_name(s.source)}",
                extra=[
                    ExampleImage(
                        caption=f"typical {ctx.class_name(s.label)} (#{int(j)})",
                        uri=evidence.png_data_uri(train.x[j]),
                    )
                ],
            )
        )
    return out


def _pair_row(f: Any) -> dict[str, Any]:
    """A :class:`roadworthy.backdoor.pairs.FlipPair` as a report row."""
    return {
        "source": f.source,
        "count": f.count,
        "n": f.n,
        "null_rate": round(f.null_rate, 4),
        "null_cell": list(f.null_cell),
        "p": float(f"{f.p_value:.3g}"),
        "excess": round(f.excess, 1),
    }


def _pair_text(f: Any) -> str:
    return (
        f"label disagreement: {f.count} of {f.n} labelled {f.target} look like {f.source} out of sample "
        f"(at most {f.null_rate:.1%} in other classes' cells, p={f.p_value:.2g})"
    )


def _class_text(f: Any) -> str:
    return (
        f"label disagreement: {f.count} of {f.n} labelled {f.target} look like other classes out of sample "
        f"(at most {f.null_rate:.1%} of any other class, p={f.p_value:.2g})"
    )
