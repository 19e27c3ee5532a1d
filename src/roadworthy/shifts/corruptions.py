"""The 15 ImageNet-C corruptions and its 4 held-out extras, on whole batches.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations",
ICLR 2019. Severity tables: ImageNet-C's (about 224 px) and CIFAR-10-C's (32 px) from the authors'
``make_imagenet_c.py`` / ``make_cifar_c.py``, chosen and scaled by image size (see ``base.sized``).
Departures from the reference code, all for batches, speed or independence from downloaded files:
frost uses procedurally generated ice textures instead of five photographs, with each texture's intensities
mapped onto one photograph's grey-level distribution (so the strength per severity follows the
reference's); motion blur is a line kernel (no ImageMagick); glass blur displaces every pixel by an
independent random offset instead of a sequential chain of swaps; JPEG goes through OpenCV's libjpeg
instead of PIL's (and, for images up to 64 x 64 px, through a vectorised emulation of libjpeg,
``_jpeg.py``). Elastic transform follows the imagecorruptions package (a smooth displacement field, no
affine part) at ImageNet sizes, CIFAR-10-C's ``make_cifar_c.py`` at 32 px. Mean absolute change per
corruption and severity is within 20% of imagecorruptions 1.1.2's on 224 px photographs
(``benchmarks/bench_shift.py``); numbers are still not identical to published ImageNet-C or CIFAR-10-C
results, which were computed on other images with other random draws.
"""

from __future__ import annotations

import math

import numpy as np

from roadworthy.shifts import _ops as ops
from roadworthy.shifts.base import image_size, large_weight, shift, sized

# ------------------------------------------------------------------------------------------- noise


@shift("gaussian_noise", "noise", "Additive Gaussian noise (sensor noise in good light).", imagenet_c=True)
def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (sigma,) = sized(severity, image_size(x), [0.04, 0.06, 0.08, 0.09, 0.10], [0.08, 0.12, 0.18, 0.26, 0.38])
    noise = ops.normal(rng, x.shape)
    noise *= np.float32(sigma)
    noise += x
    return noise


@shift("shot_noise", "noise", "Poisson (photon) noise: few photons per pixel.", imagenet_c=True)
def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (c,) = sized(severity, image_size(x), [500, 250, 100, 75, 50], [60, 25, 12, 5, 3])
    return ops.poisson_scaled(np.clip(x, 0.0, 1.0), float(c), rng)


@shift(
    "impulse_noise", "noise", "Salt-and-pepper noise: single pixels stuck black or white.", imagenet_c=True
)
def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (amount,) = sized(severity, image_size(x), [0.01, 0.02, 0.03, 0.05, 0.07], [0.03, 0.06, 0.09, 0.17, 0.27])
    u = ops.uniform_bits(rng, x.size).reshape(x.shape)  # 16-bit uniforms: ample for these rates
    miss = u >= np.uint16(round(amount * (1 << 16)))
    salt = u >= np.uint16(round(amount / 2 * (1 << 16)))  # half of the hits pepper (0), half salt (1)
    salt &= ~miss
    out = np.multiply(x, miss, dtype=np.float32)  # arithmetic on masks: much faster than masked writes
    out += salt
    return out


@shift("speckle_noise", "extra", "Multiplicative Gaussian noise (ImageNet-C held-out extra).")
def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (c,) = sized(severity, image_size(x), [0.06, 0.1, 0.12, 0.16, 0.2], [0.15, 0.2, 0.35, 0.45, 0.6])
    import torch

    t = torch.from_numpy(x)
    return torch.addcmul(
        t, t, torch.from_numpy(ops.normal(rng, x.shape)), value=float(c)
    ).numpy()  # x(1 + cN)


# ------------------------------------------------------------------------------------------- blur


@shift("defocus_blur", "blur", "Out-of-focus lens: a disk-shaped blur.", imagenet_c=True)
def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]
    large = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]
    radius, alias = sized(severity, image_size(x), small, large, pixel=(0, 1))
    return ops.filter2d(x, ops.disk_kernel(radius, alias), border="reflect")


@shift("glass_blur", "blur", "Frosted glass: blur, locally scrambled pixels, blur again.", imagenet_c=True)
def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]
    large = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
    sigma, delta, iterations = sized(severity, image_size(x), small, large, pixel=(0, 1))
    delta, iterations = max(1, round(delta)), max(1, round(iterations))
    n, _c, h, w = x.shape
    cv2 = ops.cv2()
    k = 2 * math.ceil(4 * sigma) + 1 if sigma > 0.01 else 1  # below 0.01 px no blur, as ops.gaussian_blur
    grid = ops.pixel_grid_xy(h, w)
    # every pixel takes the value of a random neighbour up to `delta` px up/left or down/right, per pass
    # (offsets in [-delta, delta - 1] as the reference draws them, from random bytes through a look-up table)
    to_offset = (((np.arange(256) * (2 * delta)) >> 8) - delta).astype(np.int16)
    steps = ops.uniform_bits(rng, n * iterations * h * w * 2, np.uint8).reshape(-1, 2 * w)
    offsets = cv2.LUT(steps, to_offset).reshape(n, iterations, h, w, 2)

    def one(img: np.ndarray, moves: np.ndarray) -> np.ndarray:
        img = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
        for move in moves:
            img = cv2.remap(img, grid + move, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        return cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)

    return ops.per_image(one, x, offsets)


@shift("motion_blur", "blur", "Camera or object motion: a line blur at a random angle.", imagenet_c=True)
def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]
    large = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]
    radius, sigma = sized(severity, image_size(x), small, large, pixel=(0, 1))
    return ops.motion_blur(x, radius, sigma, rng.uniform(-45, 45, x.shape[0]))


@shift(
    "zoom_blur",
    "blur",
    "Zooming during the exposure: the mean of increasingly zoomed copies.",
    imagenet_c=True,
)
def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)]
    large = [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)]
    end, step = sized(severity, image_size(x), small, large)
    return ops.zoom_mean(x, np.arange(1.0, end, step))


@shift("gaussian_blur", "extra", "Gaussian blur (ImageNet-C held-out extra).")
def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (sigma,) = sized(severity, image_size(x), [0.4, 0.6, 0.7, 0.8, 1.0], [1, 2, 3, 4, 6], pixel=(0,))
    return ops.gaussian_blur(x, float(sigma))


# ------------------------------------------------------------------------------------------- weather


@shift("snow", "weather", "Falling snow: bright streaks over a whitened image.", imagenet_c=True)
def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # (mean, std, zoom, threshold, blur radius, blur sigma, image weight)
    small = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ]
    large = [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ]
    mean, std, zoom, threshold, radius, sigma, keep = sized(
        severity, image_size(x), small, large, pixel=(4, 5)
    )
    n, _, h, w = x.shape
    flakes = np.float32(mean) + np.float32(std) * ops.normal(rng, (n, 1, h, w))
    flakes = ops.zoom_center(flakes, max(1.0, float(zoom)))
    flakes[flakes < threshold] = 0.0
    flakes = ops.motion_blur(np.clip(flakes, 0.0, 1.0), radius, sigma, rng.uniform(-135, -45, n))
    flakes = np.round(flakes * 255) / 255
    lifted = np.maximum(x, ops.rgb_to_gray(x) * 1.5 + 0.5)
    out = np.float32(keep) * x + np.float32(1 - keep) * lifted
    return out + flakes + flakes[:, :, ::-1, ::-1]


#: Intensity distribution of ImageNet-C's frost photographs, the calibration target of the procedural
#: textures: per photograph and RGB channel, the grey levels at the quantiles :data:`FROST_QUANTILES`. Measured
#: on frost1-frost5 of the imagecorruptions 1.1.2 package (the five its ``frost`` draws from, frost6 is never
#: picked) after its 1.1x cubic upscale; frost2 and frost3 are one picture twice (the same statistics), which
#: the reference picks twice as often as the others, and so does this table.
#: contrast of a texture around its mean relative to the photograph's distribution (see frost_textures)
FROST_CROP_CONTRAST = 0.8
FROST_QUANTILES = (0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99)
FROST_LEVELS = (
    (
        (31, 40, 50, 61, 74, 90, 106, 127, 150),
        (116, 123, 132, 140, 148, 157, 167, 177, 189),
        (134, 141, 149, 157, 166, 174, 182, 191, 202),
    ),
    (
        (138, 162, 180, 193, 204, 213, 221, 230, 241),
        (140, 165, 183, 197, 208, 218, 227, 235, 245),
        (146, 172, 192, 206, 218, 228, 236, 244, 250),
    ),
    (
        (138, 162, 180, 193, 204, 213, 221, 230, 241),
        (140, 165, 183, 197, 208, 218, 227, 235, 245),
        (146, 172, 192, 206, 218, 228, 236, 244, 250),
    ),
    (
        (70, 91, 110, 124, 138, 151, 164, 183, 217),
        (84, 106, 126, 140, 153, 166, 179, 198, 232),
        (93, 115, 137, 151, 165, 179, 193, 213, 246),
    ),
    (
        (34, 48, 67, 86, 108, 132, 158, 194, 232),
        (45, 60, 79, 98, 119, 143, 168, 202, 237),
        (56, 72, 92, 110, 131, 154, 178, 210, 242),
    ),
)


def frost_textures(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    """Procedural frost textures ``(5, channels, h, w)`` in [0, 1], one per row of :data:`FROST_LEVELS`.

    Replaces ImageNet-C's frost photographs: fractal value noise for the frozen film, and bundles of short,
    nearly straight bright lines (ice needles) of a few pixels' width, slightly blurred. The blend's
    intensities are then mapped, rank for rank, onto the grey-level distribution of one photograph per
    texture (each channel onto its own quantiles), so that a texture darkens, brightens and tints an image
    as much as the photograph does: the corruption's strength, which is what mCE reads, follows the
    reference's; only the shapes of the crystals differ. A gray image gets the luminance of the RGB
    texture, as the reference converts its crop.
    """
    k = len(FROST_LEVELS)
    size = math.sqrt(h * w)
    film = ops.fractal_noise(rng, k, h, w, base_cells=3, octaves=5) ** 1.5
    n_needles = max(6, int(40 * h * w / 224**2 * 4))
    needles = ops.curves_mask(
        rng,
        k,
        h,
        w,
        n_needles,
        length=0.18 * size,
        thickness=max(1.0, size / 150),
        curl=0.05,
        from_edge=False,
    )
    needles = ops.gaussian_blur(needles[:, None], max(0.3, size / 300))[:, 0]
    blend = 0.75 * film + 0.6 * needles  # continuous: ranks without large ties
    rank = np.empty(h * w, np.float64)
    out = np.empty((k, 3, h, w), np.float32)
    for i, levels in enumerate(FROST_LEVELS):
        rank[np.argsort(blend[i].ravel(), kind="stable")] = (np.arange(h * w) + 0.5) / (h * w)
        for c in range(3):
            out[i, c] = np.interp(rank, FROST_QUANTILES, levels[c]).reshape(h, w) / 255
    # A photograph is 2.6-4.4 times the side of a 224 px crop, so one crop spans part of its range; a
    # texture is 1.5 times the image. Deviations from each texture's mean are scaled to give a crop the
    # contrast of the photographs' crops (their 224 px crops have a grey-level std of 15-37, 23 on average;
    # ours would have 18-45, 26 on average, and 1.3 times their contrast at the 32 px scale).
    mean = out.mean(axis=(2, 3), keepdims=True)
    out -= mean
    out *= np.float32(FROST_CROP_CONTRAST)
    out += mean
    if channels == 1:
        return np.tensordot(out, np.array([0.2989, 0.5870, 0.1140], np.float32), axes=([1], [0]))[:, None]
    return out


@shift("frost", "weather", "Frost on the lens: an ice texture blended over the image.", imagenet_c=True)
def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)]
    large = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]
    keep, amount = sized(severity, image_size(x), small, large)
    n, c, h, w = x.shape
    bank = _frost_bank(h + h // 2, w + w // 2, c)
    # like ImageNet-C: a random crop of one of its frost pictures, here also flipped at random
    pick = rng.integers(0, len(bank), n)
    top = rng.integers(0, bank.shape[2] - h + 1, n)
    left = rng.integers(0, bank.shape[3] - w + 1, n)
    flip = rng.integers(0, 4, n)
    cv2 = ops.cv2()
    out = np.empty_like(x)
    codes = {1: 0, 2: 1, 3: -1}  # flip bit 1: upside down (cv2 code 0), bit 2: mirrored (1), both (-1)
    for i in range(n):
        for k in range(c):
            crop = bank[pick[i], k, top[i] : top[i] + h, left[i] : left[i] + w]
            if flip[i]:
                crop = cv2.flip(crop, codes[int(flip[i])])
            cv2.addWeighted(crop, float(amount), x[i, k], float(keep), 0.0, out[i, k])
    return out


_FROST_BANKS: dict[tuple[int, int, int], np.ndarray] = {}


def _frost_bank(h: int, w: int, channels: int) -> np.ndarray:
    """The frost textures of ``h x w`` px, generated once per size from a fixed seed (ImageNet-C draws from
    five fixed photographs; the randomness is in the choice and the crop)."""
    key = (h, w, channels)
    if key not in _FROST_BANKS:
        if len(_FROST_BANKS) >= 2:  # a bank is 5 x 1.5^2 image areas: keep few
            _FROST_BANKS.pop(next(iter(_FROST_BANKS)))
        _FROST_BANKS[key] = frost_textures(np.random.default_rng(0xF2057), h, w, channels)
    return _FROST_BANKS[key]


@shift("fog", "weather", "Fog: a smooth fractal haze that lowers contrast unevenly.", imagenet_c=True)
def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]
    large = [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)]
    strength, decay = sized(severity, image_size(x), small, large)
    n, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()  # the next power of two
    haze = ops.plasma_fractal(rng, n, mapsize, float(decay))[:, None, :h, :w]
    haze *= np.float32(strength)
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    out = x + haze
    out *= peak / (peak + np.float32(strength))
    return out


@shift(
    "brightness", "weather", "Brighter light: HSV value raised (saturated regions wash out).", imagenet_c=True
)
def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (c,) = sized(severity, image_size(x), [0.05, 0.1, 0.15, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5])
    v = x.max(axis=1, keepdims=True)
    v_new = np.minimum(v + np.float32(c), np.float32(1))
    # with hue and saturation kept, every RGB channel is proportional to V (and black becomes grey V')
    scale = v_new / np.maximum(v, np.float32(1e-12))
    out = x * scale
    black = v <= 0
    if black.any():
        np.maximum(out, v_new * black, out=out)
    return out


# ------------------------------------------------------------------------------------------- digital


@shift("contrast", "digital", "Lower contrast: pixels pulled towards the image mean.", imagenet_c=True)
def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (c,) = sized(severity, image_size(x), [0.75, 0.5, 0.4, 0.3, 0.15], [0.4, 0.3, 0.2, 0.1, 0.05])
    import torch

    t = torch.from_numpy(x)
    out = t * float(c)
    out += t.mean(dim=(2, 3), keepdim=True) * float(1 - c)  # (x - mean) * c + mean
    return out.numpy()


# Elastic transform, by size. CIFAR-10-C's table (make_cifar_c.py, 32 px): (alpha, sigma, affine jitter) as
# fractions of the image side, mostly a random affine warp. ImageNet-C's, as the imagecorruptions package
# implements it (1.1.2, the reference the benchmark compares with): no affine warp, uniform noise of
# amplitude 0.005 H smoothed by a Gaussian of sigma 0.01 H (truncated at 3 sigma, reflecting edges) and
# scaled by alpha = 250 x (0.05, 0.065, 0.085, 0.1, 0.12). Both are stored as (ratio, sigma, jitter) with
# ratio = alpha / sigma for a unit-amplitude smoothed noise field: the displacement is about 0.16 x ratio
# px whatever sigma is. In the ImageNet-C rows ratio = 250 c x 0.005 H / (0.01 H) = 125 c does not depend
# on the image size (the reference displaces by the same 1-2.4 px at any size), while sigma and the jitter
# are pixel distances scaled with the size (see _base.sized).
_ELASTIC_SMALL = [
    (a / s if s else 0.0, 32 * s, 32 * f)
    for a, s, f in [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]
]
_ELASTIC_LARGE = [(125 * c, 0.01 * 224, 0.0) for c in (0.05, 0.065, 0.085, 0.1, 0.12)]


@shift(
    "elastic_transform",
    "digital",
    "Elastic warp: a smooth random displacement field (plus a random affine jitter on small images).",
    imagenet_c=True,
)
def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    ratio, sigma, jitter = sized(severity, image_size(x), _ELASTIC_SMALL, _ELASTIC_LARGE, pixel=(1, 2))
    n, _, h, w = x.shape
    yy, xx = ops.pixel_grid(h, w)
    if ratio > 0 and sigma > 0:
        alpha = np.float32(ratio * sigma)
        px = ops.smooth_noise(rng, n, h, w, sigma)
        px *= alpha
        px += xx
        py = ops.smooth_noise(rng, n, h, w, sigma)
        py *= alpha
        py += yy
    else:
        px, py = np.broadcast_to(xx, (n, h, w)), np.broadcast_to(yy, (n, h, w))
    if jitter <= 0:
        return ops.remap(x, px, py, border="reflect")
    # random affine (CIFAR-10-C): three reference points moved by up to `jitter` px
    centre = np.array([w // 2, h // 2], np.float64)
    half = min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src[None] + rng.uniform(-jitter, jitter, (n, 3, 2))
    # inverse map (output pixel -> input pixel): solve  [x' y' 1] @ A = [x y]  for each image
    lhs = np.concatenate([dst, np.ones((n, 3, 1))], axis=2)
    inv = np.linalg.solve(lhs, np.broadcast_to(src, (n, 3, 2))).astype(np.float32)  # (n, 3, 2)
    map_x = px * inv[:, 0, 0, None, None] + py * inv[:, 1, 0, None, None] + inv[:, 2, 0, None, None]
    map_y = px * inv[:, 0, 1, None, None] + py * inv[:, 1, 1, None, None] + inv[:, 2, 1, None, None]
    return ops.remap(x, map_x, map_y, border="reflect")


@shift(
    "pixelate",
    "digital",
    "Low resolution: box-downscaled, then upscaled again.",
    imagenet_c=True,
    per_image=True,
)
def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    size = image_size(x)
    (c,) = sized(severity, size, [0.95, 0.9, 0.85, 0.75, 0.65], [0.6, 0.5, 0.4, 0.3, 0.25])
    cv2 = ops.cv2()
    _, _, h, w = x.shape
    sh, sw = max(1, int(h * c)), max(1, int(w * c))
    # upscaling as the tables' authors did: box (area) for CIFAR-10-C, nearest neighbour for ImageNet-C
    # (PIL's, which takes the source pixel under each output pixel's centre: OpenCV's NEAREST_EXACT; plain
    # NEAREST takes the one under its top-left corner, shifting the image by up to half a block)
    box_up = large_weight(size) < 0.5
    if h * w <= ops.SMALL_PIXELS:
        up_rows = ops.box_matrix(h, sh) if box_up else ops.nearest_matrix(h, sh)
        up_cols = ops.box_matrix(w, sw) if box_up else ops.nearest_matrix(w, sw)
        out = ops.separable(x, up_rows @ ops.box_matrix(sh, h), up_cols @ ops.box_matrix(sw, w))
        return np.clip(out, 0.0, 1.0, out=out)
    up = cv2.INTER_AREA if box_up else cv2.INTER_NEAREST_EXACT
    n, ch = x.shape[:2]
    out = np.empty(x.shape, np.float32)
    for i in range(n):
        # box-downscale the interleaved image in one call, then upscale each small plane straight into place
        small = cv2.resize(
            x[i, 0] if ch == 1 else cv2.merge(list(x[i])), (sw, sh), interpolation=cv2.INTER_AREA
        )
        np.clip(small, 0.0, 1.0, out=small)  # on the small image: the upscaled copies are then in range
        for k, plane in enumerate([small] if ch == 1 else cv2.split(small)):
            cv2.resize(plane, (w, h), out[i, k], interpolation=up)
    return out


@shift(
    "jpeg_compression",
    "digital",
    "JPEG compression artefacts (libjpeg at low quality).",
    imagenet_c=True,
    per_image=True,
)
def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    (q,) = sized(severity, image_size(x), [80, 65, 58, 50, 40], [25, 18, 15, 10, 7])
    n, c, h, w = x.shape
    if h * w <= ops.SMALL_PIXELS:
        # small images: the whole batch through a vectorised emulation of libjpeg (2-3x faster there)
        from roadworthy.shifts._jpeg import jpeg_roundtrip  # imports torch: not at registry load

        return jpeg_roundtrip(x, round(q))
    cv2 = ops.cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, round(q)]
    # 8-bit planes (rounded, saturated: what a JPEG file holds) for the whole batch in one pass
    planes = cv2.convertScaleAbs(np.ascontiguousarray(x).reshape(-1, w), alpha=255.0).reshape(n, c, h, w)
    decoded = np.empty_like(planes)
    for i in range(n):
        # OpenCV's encoder takes BGR; its decoder gives BGR back, split straight into the planes
        img = cv2.merge([planes[i, 2], planes[i, 1], planes[i, 0]]) if c == 3 else planes[i, 0]
        dec = cv2.imdecode(cv2.imencode(".jpg", img, params)[1], cv2.IMREAD_UNCHANGED)
        if c == 3:
            cv2.split(dec, [decoded[i, 2], decoded[i, 1], decoded[i, 0]])
        else:
            decoded[i, 0] = dec
    return np.multiply(decoded, np.float32(1 / 255), dtype=np.float32)


# ------------------------------------------------------------------------------------------- extras


@shift("spatter", "extra", "Water or mud splashed on the lens (ImageNet-C held-out extra).")
def spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # (mean, std, blur sigma, threshold, intensity or mud blur, mud?)
    small = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ]
    large = [
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ]
    size = image_size(x)
    mud = round(sized(severity, size, small, large)[5]) == 1
    mean, std, sigma, threshold, fifth, _ = sized(severity, size, small, large, pixel=(2, 4) if mud else (2,))
    import torch

    cv2 = ops.cv2()
    n, _, h, w = x.shape
    liquid = ops.normal(rng, (n, 1, h, w))
    liquid *= np.float32(std)
    liquid += np.float32(mean)
    liquid = ops.gaussian_blur(liquid, float(sigma))[:, 0]
    for layer in liquid:  # values below the threshold dry up (OpenCV's TOZERO keeps those above it)
        cv2.threshold(layer, float(threshold), 0.0, cv2.THRESH_TOZERO, dst=layer)
    if mud:
        m = ops.gaussian_blur((liquid > threshold).astype(np.float32)[:, None], float(fifth))
        for layer in m[:, 0]:
            cv2.threshold(layer, 0.8, 0.0, cv2.THRESH_TOZERO, dst=layer)
        mud_colour = torch.from_numpy(ops.colour(x, (63 / 255, 42 / 255, 20 / 255)))
        return torch.lerp(torch.from_numpy(x), mud_colour, torch.from_numpy(m)).numpy()  # x + m (mud - x)
    u8 = cv2.convertScaleAbs(liquid.reshape(-1, w), alpha=255.0).reshape(liquid.shape)  # rounded, saturated

    def distance(layer: np.ndarray) -> np.ndarray:
        d = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
        _, d = cv2.threshold(d, 20, 20, cv2.THRESH_TRUNC)
        return cv2.blur(d, (3, 3)).astype(np.uint8)

    dist = ops.equalize_hist_u8(np.stack([distance(layer) for layer in u8]))
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
    dist = np.stack([cv2.blur(cv2.filter2D(d, cv2.CV_8U, ker), (3, 3)) for d in dist]).astype(np.float32)
    m = (u8.astype(np.float32) * dist)[:, None]
    m *= np.float32(fifth) / np.maximum(m.max(axis=(2, 3), keepdims=True), np.float32(1e-12))
    water = torch.from_numpy(ops.colour(x, (175 / 255, 238 / 255, 238 / 255)))
    return torch.addcmul(torch.from_numpy(x), torch.from_numpy(m), water).numpy()


@shift(
    "saturate", "extra", "Colour saturation changed in HSV (ImageNet-C held-out extra; no effect on gray)."
)
def saturate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    small = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]
    large = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)]
    gain, offset = sized(severity, image_size(x), small, large)
    if x.shape[1] == 1:
        return x.copy()  # a gray image has no saturation; the reference returns it unchanged too
    v = x.max(axis=1, keepdims=True)
    spread = v - x.min(axis=1, keepdims=True)
    s = spread / np.maximum(v, np.float32(1e-12))  # HSV saturation (0 for black)
    s_new = np.clip(s * np.float32(gain) + np.float32(offset), 0.0, 1.0)
    # with hue and value kept, channel = V - V * S' * (V - channel) / (V - min): one weight k per pixel,
    # channel' = k * channel + (1 - k) * V
    grey = spread <= 0
    k = v * s_new / np.where(grey, np.float32(1), spread)
    k[grey] = 0.0
    out = x * k
    out += v * (1 - k)
    if offset > 0:  # grey pixels gain saturation with hue 0 (red), as in skimage: G and B drop to V (1 - S')
        out[:, 1:] -= v * s_new * grey
    return out
