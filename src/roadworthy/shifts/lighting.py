"""Night and rain: low light with the sensor noise a camera's gain amplifies, and rain streaks.

The article's own weather and lighting shifts (ImageNet-C has brightness and fog but neither darkness nor
rain). Pixel distances (streak length) scale with the image size.
"""

from __future__ import annotations

import numpy as np

from roadworthy.shifts import _ops as ops
from roadworthy.shifts.base import image_size, shift


@shift("low_light", "article", "Low light: under-exposure, photon and read noise, then the camera's gain.")
def low_light(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    exposure = [0.5, 0.35, 0.22, 0.13, 0.07][severity - 1]
    read_noise = [0.004, 0.006, 0.008, 0.01, 0.012][severity - 1]
    signal = x * np.float32(exposure)
    # photon noise ~ sqrt(signal) (a full well of ~250 photons at white) plus read noise, per channel
    std = np.sqrt(signal / np.float32(250.0) + np.float32(read_noise**2))
    noisy = signal + std * ops.normal(rng, x.shape)
    gain = np.float32(exposure**-0.6)  # auto-exposure lifts the image part way, and the noise with it
    return noisy * gain


@shift("rain", "weather", "Rain: bright, slanted streaks over a slightly hazed, darkened scene.")
def rain(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    density = [0.004, 0.008, 0.014, 0.02, 0.03][severity - 1]
    length = [0.06, 0.08, 0.1, 0.12, 0.15][severity - 1] * image_size(x)
    haze = [0.03, 0.06, 0.1, 0.14, 0.2][severity - 1]
    n, _, h, w = x.shape
    drops = (ops.uniform(rng, (n, 1, h, w)) < density).astype(np.float32)
    drops *= 0.6 + 0.4 * ops.uniform(rng, drops.shape)
    # every image gets its own wind: streaks within 20 degrees of vertical, falling down
    angle = 90 + rng.uniform(-20, 20, n)
    radius = max(1.0, length / 2)
    streaks = ops.motion_blur(drops, radius, sigma=radius, angles=angle) * np.float32(0.5 * (2 * radius + 1))
    streaks = np.clip(streaks, 0.0, 1.0) * np.float32(0.85)
    scene = x * np.float32(1 - 1.5 * haze) + np.float32(haze * 0.8)
    return scene + streaks * (1 - scene)
