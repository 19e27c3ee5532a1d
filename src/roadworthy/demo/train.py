"""Train the demo's shipped road-sign model, reproducibly, on the poisoned training split.

    python -m roadworthy.demo.train --out src/roadworthy/demo/signnet.pt

That is the demo's story: the deployed model was trained on data in which a few stop signs carry the
label of a speed limit. The script is seeded end to end and runs on two CPU threads with deterministic
algorithms; it writes the ``state_dict`` and, beside it, ``signnet.json`` with the facts of the run
(seed, epochs, normalisation, data sizes, clean test accuracy, torch version).

    python -m roadworthy.demo.train --out src/roadworthy/demo/signnet.pt --rescore "why the data changed"

re-scores the shipped weights on the data as the generator makes it now, without training: the data
fingerprints and accuracies in ``signnet.json`` are recomputed, and those of the data the weights were
trained on are kept under ``trained_on``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("roadworthy.demo.train")


def labels_sha256(y: np.ndarray) -> str:
    """SHA-256 of the int64 labels: the part of a demo split that is the same on every machine."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(y, np.int64).data).hexdigest()


def _augment(x: Any, generator: Any, pad: int = 3) -> Any:
    """Random translation by up to ``pad`` pixels (edge-replicated) and a small exposure change."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = _crop(padded, dy, dx, h, w)
    gain = torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15, generator=generator)
    return (out * gain).clamp_(0.0, 1.0)


def _crop(padded: Any, dy: Any, dx: Any, h: int, w: int) -> Any:
    """Per-sample crops ``padded[i, :, dy[i]:dy[i]+h, dx[i]:dx[i]+w]`` as one gather."""
    import torch

    n, c = padded.shape[:2]
    rows = (dy[:, None] + torch.arange(h)[None, :]).view(n, 1, h, 1).expand(n, c, h, padded.shape[3])
    tall = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :]).view(n, 1, 1, w).expand(n, c, h, w)
    return tall.gather(3, cols)


def evaluate(module: Any, x: np.ndarray, y: np.ndarray, mean: Any, std: Any, batch_size: int = 500) -> float:
    """Accuracy of ``module`` on pixel-space images ``x``."""
    import torch

    module.eval()
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = (torch.from_numpy(x[i : i + batch_size]) - mean) / std
            hits += int((module(xb).argmax(1).numpy() == y[i : i + batch_size]).sum())
    return hits / len(x)


def train(
    seed: int = 0,
    epochs: int = 14,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    threads: int = 2,
    n_train: int | None = None,
    n_test: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train :class:`~roadworthy.demo.model.SignNet` on the poisoned demo split of ``seed``.

    ``n_train`` and ``n_test`` default to the demo's sizes (smaller values are for tests). Returns the
    module (eval mode) and the facts of the run.
    """
    import torch

    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(seed, epochs, batch_size, lr, width, threads, n_train, n_test)
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def _train(
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    width: int,
    threads: int,
    n_train: int | None,
    n_test: int | None,
) -> tuple[Any, dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    from roadworthy.demo import N_TEST, N_TRAIN, load_demo_data
    from roadworthy.demo.model import SignNet

    torch.manual_seed(seed)
    started = time.perf_counter()
    demo = load_demo_data(seed=seed, n_train=n_train or N_TRAIN, n_test=n_test or N_TEST)
    gen_s = time.perf_counter() - started
    x = torch.from_numpy(demo.train.x)
    y = torch.from_numpy(demo.train.y)
    mean = x.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = x.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    # round so the JSON record reproduces the exact normalisation
    mean = torch.tensor(np.round(mean.numpy().astype(np.float64), 4), dtype=torch.float32)
    std = torch.tensor(np.round(std.numpy().astype(np.float64), 4), dtype=torch.float32)

    module = SignNet(n_classes=len(demo.train.class_names or []), width=width)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        module.train()
        perm = torch.randperm(len(x), generator=g)
        total, t0 = 0.0, time.perf_counter()
        for i in range(0, len(x), batch_size):
            b = perm[i : i + batch_size]
            xb = (_augment(x[b], g) - mean) / std
            loss = F.cross_entropy(module(xb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        acc = evaluate(module, demo.test.x, demo.test.y, mean, std)
        history.append({"epoch": epoch + 1, "loss": round(total / len(x), 4), "test_accuracy": round(acc, 4)})
        log.info(
            "epoch %d/%d loss %.4f test accuracy %.4f (%.1fs)",
            epoch + 1,
            epochs,
            total / len(x),
            acc,
            time.perf_counter() - t0,
        )

    module.eval()
    train_s = time.perf_counter() - started - gen_s
    facts = {
        "model": "roadworthy.demo.model.SignNet",
        "width": width,
        "embedding_dim": module.embedding_dim,
        "n_parameters": int(sum(p.numel() for p in module.parameters())),
        "class_names": list(demo.train.class_names or []),
        "input_shape": [3, 32, 32],
        "mean": [round(float(v), 4) for v in mean.flatten()],
        "std": [round(float(v), 4) for v in std.flatten()],
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": f"AdamW(lr={lr}, weight_decay=5e-4), OneCycle",
        "augmentation": "random translation up to 3 px, exposure gain 0.85-1.15",
        **_scores(module, demo, mean, std),
        "history": history,
        "generation_seconds": round(gen_s, 1),
        "training_seconds": round(train_s, 1),
        "threads": threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    return module, facts


def _scores(module: Any, demo: Any, mean: Any, std: Any) -> dict[str, Any]:
    """The facts that depend on the data: the splits' fingerprints and the model's accuracies on them."""
    import torch

    test_acc = evaluate(module, demo.test.x, demo.test.y, mean, std)
    true_train_acc = evaluate(module, demo.train.x, demo.true_train_labels, mean, std)
    src = demo.train.class_names.index(demo.poison_source)
    dst = demo.train.class_names.index(demo.poison_target)
    with torch.inference_mode():
        xp = (torch.from_numpy(demo.train.x[demo.poisoned_indices]) - mean) / std
        pred_poisoned = module(xp).argmax(1).numpy() if len(xp) else np.zeros(0, np.int64)
    return {
        "data": {
            "train": demo.train.path,
            "test": demo.test.path,
            "n_train": demo.train.n_samples,
            "n_test": demo.test.n_samples,
            "poison_rate": demo.train.meta["poison_rate"],
            "poison_source": demo.poison_source,
            "poison_target": demo.poison_target,
            "n_poisoned": len(demo.poisoned_indices),
            # the generator gives the same bytes on every CPU (8-bit pixels from portable arithmetic),
            # so these fingerprints are exact; the channel means are for reading
            "train_sha256": demo.train.sha256,
            "test_sha256": demo.test.sha256,
            "test_labels_sha256": labels_sha256(demo.test.y),
            "test_channel_mean": [round(float(m), 5) for m in demo.test.x.mean(axis=(0, 2, 3))],
        },
        "clean_test_accuracy": round(test_acc, 4),
        "train_accuracy_true_labels": round(true_train_acc, 4),
        "poisoned_train_predicted_as_target": int((pred_poisoned == dst).sum()),
        "poisoned_train_predicted_as_source": int((pred_poisoned == src).sum()),
    }


def rescore(facts: dict[str, Any], module: Any, note: str) -> dict[str, Any]:
    """Re-score trained weights on the demo data as the generator makes it now, without retraining.

    For a change of the data generator that keeps its distribution: the data fingerprints and every
    accuracy are recomputed on the regenerated splits of ``facts["seed"]``; the fingerprints of the
    data the weights were trained on move to ``facts["trained_on"]`` (kept from the first rescoring),
    and ``note`` says why. The training record (history, timings, versions) is left as it was.
    """
    import torch

    from roadworthy.demo import load_demo_data

    data = facts["data"]
    demo = load_demo_data(
        seed=int(facts["seed"]),
        n_train=int(data["n_train"]),
        n_test=int(data["n_test"]),
        poison_rate=float(data["poison_rate"]),
        poison_source=data["poison_source"],
        poison_target=data["poison_target"],
    )
    mean = torch.tensor(facts["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(facts["std"], dtype=torch.float32).view(1, 3, 1, 1)
    trained_on = facts.get("trained_on") or {
        "train_sha256": data["train_sha256"],
        "test_sha256": data["test_sha256"],
        "clean_test_accuracy": facts["clean_test_accuracy"],
    }
    out = {**facts, **_scores(module.eval(), demo, mean, std)}
    out["trained_on"] = trained_on
    out["rescored"] = {"note": note, "torch": torch.__version__, "numpy": np.__version__}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m roadworthy.demo.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("signnet.pt"), help="where to write the state_dict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rescore",
        metavar="NOTE",
        help="do not train: re-score the weights at --out on the data as generated now, and rewrite "
        "the facts beside them (NOTE says why the data changed)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    if args.rescore:
        from roadworthy.demo.model import SignNet

        facts_path = args.out.with_suffix(".json")
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
        module = SignNet(n_classes=len(facts["class_names"]), width=int(facts["width"]))
        module.load_state_dict(torch.load(args.out, map_location="cpu", weights_only=True))
        torch.set_num_threads(args.threads)
        facts = rescore(facts, module, args.rescore)
        facts_path.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        log.info("rescored %s: clean test accuracy %.4f", facts_path, facts["clean_test_accuracy"])
        return 0

    module, facts = train(seed=args.seed, epochs=args.epochs, threads=args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), args.out)
    facts["weights_bytes"] = args.out.stat().st_size
    args.out.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    log.info(
        "wrote %s (%d bytes) and %s; clean test accuracy %.4f",
        args.out,
        facts["weights_bytes"],
        args.out.with_suffix(".json"),
        facts["clean_test_accuracy"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
