"""Small real models and data for tests: scikit-learn's digits as 16x16 images and a tiny CNN.

Everything is built in seconds on a CPU and is deterministic; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np


def digits_images(size: int = 16, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits as float32 NCHW in [0, 1], resized to ``size`` px (bilinear)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return x.numpy().astype(np.float32), d.target.astype(np.int64)


def tiny_cnn(in_channels: int = 1, n_classes: int = 10, size: int = 16, seed: int = 0):
    """A small CNN whose initial weights are fixed by ``seed`` (torch's global seed is random per process)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (size // 4) ** 2, 32),
        nn.ReLU(),
        nn.Linear(32, n_classes),
    )


def train(module, x: np.ndarray, y: np.ndarray, epochs: int = 8, seed: int = 0, lr: float = 3e-3):
    """Adam on full mini-batches; returns the module in eval mode."""
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(xt[b]), yt[b])
            loss.backward()
            opt.step()
    return module.eval()
