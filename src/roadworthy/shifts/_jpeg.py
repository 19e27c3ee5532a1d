"""Batched, vectorised emulation of a baseline JPEG round trip (encode at a quality, decode again).

:func:`jpeg_roundtrip` reproduces what libjpeg (as called by Pillow's and OpenCV's encoders and decoders with
their defaults) does to an image, for a whole float32 NCHW batch at once, without entropy coding (which is
lossless and so does not change the decoded image):

1. Quantisation to 8 bit (``round(x * 255)``, clamped to 0..255), then RGB -> YCbCr (JFIF, full range), each
   sample rounded to an integer, as libjpeg's ``jccolor.c``. Gray images are a single Y component.
2. 4:2:0 chroma subsampling (the default of both encoders): the sum of each 2x2 block of rounded Cb / Cr
   samples plus libjpeg's alternating bias (1, 2, 1, 2, ... along a row), divided by 4 and floored, exactly as
   ``h2v2_downsample``.
3. Padding as libjpeg's prep controller: columns are replicated out to whole MCUs (16 px for colour, 8 for
   gray) at full resolution; rows to an even count at full resolution, then the subsampled chroma rows out to
   whole blocks.
4. Level shift by -128, 8x8 DCT-II of every block, division by the IJG-scaled Annex K quantisation tables
   (luminance for Y, chrominance for Cb and Cr) and rounding; then the decoder's dequantisation, inverse DCT,
   +128, rounding and clamping of Y to 0..255.
5. libjpeg's default "fancy" h2v2 chroma upsampling: a separable triangle filter, 3/4 of the nearer and 1/4 of
   the farther chroma sample in each direction, with the edge samples replicated.
6. YCbCr -> RGB (JFIF), rounding and clamping to 0..255; the result is returned divided by 255.

All of it is matrix products and elementwise operations on reshaped arrays, with no per-image or per-block
Python loop. Each plane is held in an "MCU-row layout": a ``(R, N, M, W)`` array whose element ``[r, n, m, x]``
is pixel ``(m * R + r, x)`` of image ``n`` (``R`` = rows per MCU). Row ``r`` of every block is then one
contiguous slab, so the vertical transform of all blocks is a single ``(8, 8) @ (8, N * M * W)`` product and
the horizontal one a ``(..., 8) @ (8, 8)`` product over the contiguous runs of 8 columns.

Speed: the work is memory-bound, so it runs on one thread (:func:`roadworthy.threads.single_threaded`,
torch and BLAS, for the duration of the call), in chunks of at most
:data:`CHUNK_PIXELS` pixels that stay in cache, on scratch arrays reused from call to call. It beats a
per-image libjpeg loop on small images (about 3x OpenCV's and 10x Pillow's on 32 x 32) but not on large ones,
where libjpeg-turbo's SIMD code works on one cache-resident image at a time (on 224 x 224: about 1.1x
Pillow's speed and 0.55x OpenCV's, single-threaded).

Departures from libjpeg, each worth a fraction of a gray level on average (mean absolute difference to Pillow
about 0.1-0.7 gray levels on photographs, see ``tests/shifts/test_jpeg.py``):

* float32 DCTs (orthonormal DCT-II matrices) instead of libjpeg's fixed-point ``islow`` DCT, and
  round-half-to-even instead of libjpeg's rounding where values land exactly on .5; a coefficient near a
  quantisation boundary can therefore round the other way;
* the decoded chroma is neither rounded nor clamped before upsampling and the upsampled chroma is not rounded
  before the colour conversion (libjpeg rounds at each step); the inverse DCT and the upsampling of chroma are
  folded into one linear map;
* the dequantised chroma is upsampled with replication at the padded MCU edge rather than at the last real
  chroma sample, which changes the last row / column only when a side is not a multiple of 16;
* the colour conversion uses floating-point JFIF coefficients where libjpeg uses 16-bit fixed point.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from roadworthy.threads import single_threaded

__all__ = ["jpeg_roundtrip", "quant_table"]

BLOCK = 8  # DCT block side
LEVEL_SHIFT = 128.0  # samples are centred on 0 before the DCT
MAX_SAMPLE = 255.0

# JPEG standard (ITU-T T.81) Annex K, tables K.1 (luminance) and K.2 (chrominance), row-major
LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
)
CHROMA_TABLE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ]
)

# JFIF colour conversion; chroma is kept centred on 0 (libjpeg adds and later removes 128)
RGB_TO_YCBCR = np.array(
    [
        [0.29900, 0.58700, 0.11400],
        [-0.16874, -0.33126, 0.50000],
        [0.50000, -0.41869, -0.08131],
    ]
)
CR_TO_R, CB_TO_G, CR_TO_G, CB_TO_B = 1.40200, -0.34414, -0.71414, 1.77200

# libjpeg's h2v2 downsampling adds 1, 2, 1, 2, ... to the 2x2 sums along a row before dividing by 4
DOWNSAMPLE_BIAS = (1.0, 2.0)
# "fancy" upsampling weights of the nearer and the farther chroma sample
NEAR, FAR = 0.75, 0.25

# Batches are processed in chunks of at most this many (padded) pixels: it bounds the scratch memory (about
# 40 bytes a pixel, 10 MB) whatever the batch size and keeps it in cache. 5 images of 224 x 224, 256 of 32 x 32.
CHUNK_PIXELS = 2**18


def quant_table(base: np.ndarray, quality: int) -> np.ndarray:
    """IJG scaling of an Annex K table to ``quality`` 1..100 (libjpeg's ``jpeg_set_quality`` with
    ``force_baseline``): float64 (8, 8), entries clipped to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base.astype(np.int64) * scale + 50) // 100, 1, 255).astype(np.float64)


def _dct_matrix() -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (float64): ``D @ x`` transforms a column of 8 samples."""
    k = np.arange(BLOCK)
    d = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / (2 * BLOCK)) * np.sqrt(2 / BLOCK)
    d[0] /= np.sqrt(2)
    return d


def _upsample_matrix(neighbours: bool) -> np.ndarray:
    """Fancy 2x upsampling of one block row: ``samples @ U`` -> 16 outputs (float64).

    With ``neighbours`` the input has two extra entries, the last sample of the previous block and the first
    of the next one (shape (10, 16)); without, the block's own edge samples stand in for them (shape (8, 16)).
    """
    u = np.zeros((BLOCK + 2 if neighbours else BLOCK, 2 * BLOCK))
    for c in range(BLOCK):
        before = c - 1 if c > 0 else (BLOCK if neighbours else 0)
        after = c + 1 if c < BLOCK - 1 else (BLOCK + 1 if neighbours else BLOCK - 1)
        u[c, 2 * c] += NEAR
        u[before, 2 * c] += FAR
        u[c, 2 * c + 1] += NEAR
        u[after, 2 * c + 1] += FAR
    return u


@dataclass(frozen=True)
class _Matrices:
    """float32 operators for one quality. ``u`` indexes the vertical frequency, ``v`` the horizontal one."""

    dct: np.ndarray  # (8, 8) D
    idct: np.ndarray  # (8, 8) D.T
    luma_fwd: np.ndarray  # (8u, 8, 8v): row u of a block's vertical transform -> quantised coefficients
    luma_inv: np.ndarray  # (8u, 8v, 8): dequantise + inverse horizontal DCT
    chroma_fwd: np.ndarray  # (8u, 8, 8v)
    chroma_inv: np.ndarray  # (8u, 10, 16): dequantise + inverse horizontal DCT + horizontal upsampling
    chroma_edges: np.ndarray  # (8u, 8v, 2): dequantised coefficients -> the block's first and last column
    chroma_rows: np.ndarray  # (16, 8): inverse vertical DCT + vertical upsampling
    rgb_to_ycbcr: np.ndarray  # (3, 3)
    luma_dc: float  # the level shift, in quantised DC units


@lru_cache(maxsize=128)
def _matrices(quality: int) -> _Matrices:
    d = _dct_matrix()
    luma, chroma = quant_table(LUMA_TABLE, quality), quant_table(CHROMA_TABLE, quality)
    dc_shift = LEVEL_SHIFT * BLOCK  # a constant c adds 8c to the orthonormal DC coefficient
    # inverse horizontal DCT followed by upsampling; the two neighbour samples pass through unchanged
    idct_pad = np.eye(BLOCK + 2)
    idct_pad[:BLOCK, :BLOCK] = d
    up_cols = idct_pad @ _upsample_matrix(neighbours=True)
    dequant_pad = np.concatenate([chroma, np.ones((BLOCK, 2))], axis=1)  # (8u, 10)

    def f32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    return _Matrices(
        dct=f32(d),
        idct=f32(d.T),
        luma_fwd=f32(d.T[None] / luma[:, None, :]),
        luma_inv=f32(luma[:, :, None] * d[None]),
        chroma_fwd=f32(d.T[None] / chroma[:, None, :]),
        chroma_inv=f32(dequant_pad[:, :, None] * up_cols[None]),
        chroma_edges=f32(chroma[:, :, None] * d[None][:, :, [0, BLOCK - 1]]),
        chroma_rows=f32((d @ _upsample_matrix(neighbours=False)).T),
        rgb_to_ycbcr=f32(RGB_TO_YCBCR),
        luma_dc=dc_shift / luma[0, 0],
    )


class _Scratch:
    """Named float32 scratch arrays, kept between calls and grown on demand.

    Touching freshly allocated memory costs a page fault per 4 KiB page, which for the multi-megabyte
    intermediates here costs as much as the arithmetic; reusing the same buffers avoids that.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, *shape: int) -> np.ndarray:
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = self._buffers[name] = np.empty(size, np.float32)
        return buf[:size].reshape(shape)


# One shared scratch set; a call that finds it in use by another thread allocates its own instead.
_SCRATCH = _Scratch()
_SCRATCH_LOCK = threading.Lock()


def jpeg_roundtrip(x: np.ndarray, quality: int) -> np.ndarray:
    """Encode every image as baseline JPEG at ``quality`` and decode it again (libjpeg defaults, emulated).

    Args:
        x: float32 ``(N, C, H, W)`` batch, ``C`` 1 (gray) or 3 (RGB), values in [0, 1]; any ``H`` and ``W``.
        quality: IJG quality, 1 (worst) to 100; colour images are subsampled 4:2:0 at every quality, as
            Pillow and OpenCV do by default.

    Returns:
        float32 array of the same shape with values ``k / 255`` for integers ``k`` in 0..255.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected an (N, C, H, W) batch with C in {{1, 3}}, got shape {x.shape}")
    if not isinstance(quality, numbers.Integral) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    n, c, h, w = x.shape
    if x.size == 0:
        return np.zeros(x.shape, np.float32)
    # contiguous and writable (torch.from_numpy warns on read-only arrays), padded to whole MCUs
    x = np.require(x, np.float32, ["C", "W"])
    mcu = 2 * BLOCK if c == 3 else BLOCK
    hp, wp = -(-h // mcu) * mcu, -(-w // mcu) * mcu
    if (hp, wp) != (h, w):
        x = np.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w)), mode="edge")
    m = _matrices(int(quality))
    out = np.empty((n, c, hp, wp), np.float32)
    per_chunk = max(1, CHUNK_PIXELS // (hp * wp))
    shared = _SCRATCH_LOCK.acquire(blocking=False)
    try:
        scratch = _SCRATCH if shared else _Scratch()
        with single_threaded(blas=True):  # memory-bound: one thread is as fast, and safe on a busy machine
            for start in range(0, n, per_chunk):
                part = slice(start, start + per_chunk)
                if c == 1:
                    _gray(x[part], out[part], m, scratch)
                else:
                    _colour(x[part], out[part], m, h, scratch)
    finally:
        if shared:
            _SCRATCH_LOCK.release()
    out *= np.float32(1 / MAX_SAMPLE)
    return out if (hp, wp) == (h, w) else np.ascontiguousarray(out[:, :, :h, :w])


@lru_cache(maxsize=16)
def _bias_row(width: int) -> torch.Tensor:
    """libjpeg's downsampling bias along a chroma row, divided by 4: 0.25, 0.5, 0.25, ... (``width`` samples)."""
    return torch.tensor(DOWNSAMPLE_BIAS, dtype=torch.float32).repeat(width // 2) / 4


def _mcu_rows(a: torch.Tensor, rows: int) -> torch.Tensor:
    """``(N, H, W)`` view of a plane -> its ``(N, H // rows, rows, W)`` view, the order of an MCU-row layout."""
    n, h, w = a.shape
    return a.reshape(n, h // rows, rows, w)


def _forward(planes: np.ndarray, fwd: np.ndarray, m: _Matrices, out: np.ndarray, tmp: np.ndarray) -> None:
    """DCT coefficients divided by the quantisation table, not yet rounded, into ``out``.

    ``planes``: ``(K, 8, P)`` sample rows (K stacks of MCU-row layouts with 8 rows each); ``out``: ``(K, 8u,
    P // 8, 8v)``, may be a strided view; ``tmp``: scratch of the shape of ``planes``.
    """
    k = planes.shape[0]
    np.matmul(m.dct, planes, out=tmp)  # the columns of every block transformed: (K, 8u, P)
    np.matmul(tmp.reshape(k, BLOCK, -1, BLOCK), fwd, out=out)  # rows transformed, divided by the table


def _inverse_luma(coef: np.ndarray, m: _Matrices, out: np.ndarray, tmp: np.ndarray) -> None:
    """Quantised luma coefficients ``(K, 8u, P // 8, 8v)`` -> samples ``(K, 8, P)`` in ``out`` (+128, unclamped)."""
    coef[:, 0, :, 0] += m.luma_dc  # the decoder's +128, folded into DC
    np.matmul(coef, m.luma_inv, out=tmp.reshape(coef.shape))
    np.matmul(m.idct, tmp, out=out)


def _gray(x: np.ndarray, out: np.ndarray, m: _Matrices, scratch: _Scratch) -> None:
    """Round trip of one-channel images (padded to multiples of 8) into ``out``, in gray levels 0..255."""
    n, _, hp, wp = x.shape
    p = n * hp * wp // BLOCK
    plane = scratch("luma", BLOCK, n, hp // BLOCK, wp)  # MCU-row layout
    tmp = scratch("luma_tmp", 1, BLOCK, p)
    coef = scratch("luma_coef", 1, BLOCK, p // BLOCK, BLOCK)
    plane_t, out_t = torch.from_numpy(plane), torch.from_numpy(out)
    torch.mul(_mcu_rows(torch.from_numpy(x)[:, 0], BLOCK), MAX_SAMPLE, out=plane_t.permute(1, 2, 0, 3))
    plane_t.round_().clamp_(0, MAX_SAMPLE)
    _forward(plane.reshape(1, BLOCK, p), m.luma_fwd, m, coef, tmp)
    coef[:, 0, :, 0] -= m.luma_dc  # level shift -128, folded into DC
    np.rint(coef, out=coef)
    _inverse_luma(coef, m, plane.reshape(1, BLOCK, p), tmp)
    torch.clamp(plane_t.permute(1, 2, 0, 3), 0, MAX_SAMPLE, out=_mcu_rows(out_t[:, 0], BLOCK))
    out_t.round_()


def _colour(x: np.ndarray, out: np.ndarray, m: _Matrices, height: int, scratch: _Scratch) -> None:
    """Round trip of RGB images (padded to multiples of 16) into ``out``, in gray levels 0..255.

    ``height`` is the unpadded height: chroma rows below it are replaced by copies of the last real one.
    """
    n, _, hp, wp = x.shape
    mh, mw = hp // (2 * BLOCK), wp // (2 * BLOCK)  # MCUs per column / row
    p = n * mh * wp  # columns of one MCU-row layout of a full-resolution plane
    pc = p // 2  # ... of a chroma plane (half the width, 8-row MCUs)
    out_t = torch.from_numpy(out)

    # --- encoder: 8-bit RGB (in ``out``, used as scratch) -> Y, Cb, Cr at full resolution, each rounded
    torch.mul(torch.from_numpy(x), MAX_SAMPLE, out=out_t).round_().clamp_(0, MAX_SAMPLE)
    ycc = scratch("ycc", n, 3, hp, wp)
    np.matmul(m.rgb_to_ycbcr, out.reshape(n, 3, -1), out=ycc.reshape(n, 3, -1))
    ycc_t = torch.from_numpy(ycc)
    luma = scratch("luma", 2 * BLOCK, n, mh, wp)  # MCU-row layout, 16 rows
    luma_t = torch.from_numpy(luma)
    torch.round(_mcu_rows(ycc_t[:, 0], 2 * BLOCK), out=luma_t.permute(1, 2, 0, 3))
    chroma_full = ycc_t[:, 1:]
    chroma_full.round_()

    # 4:2:0: 2x2 sums + bias, / 4, floored, written in MCU-row layout (2 components, 8 rows)
    pairs = chroma_full.reshape(n, 2, hp // 2, 2, wp)
    rows = torch.from_numpy(scratch("chroma_rows", n, 2, hp // 2, wp))
    torch.add(pairs[:, :, :, 0], pairs[:, :, :, 1], out=rows)
    chroma = scratch("chroma", 2, BLOCK, n, mh, wp // 2)
    chroma_t = torch.from_numpy(chroma)
    cols = rows.view(n, 2, mh, BLOCK, wp // 2, 2).permute(1, 0, 2, 3, 4, 5)
    torch.add(cols[..., 0], cols[..., 1], out=chroma_t.permute(0, 2, 3, 1, 4))
    chroma_t.mul_(0.25).add_(_bias_row(wp // 2)).floor_().clamp_(-LEVEL_SHIFT, MAX_SAMPLE - LEVEL_SHIFT)
    last = (height + 1) // 2 - 1  # last real chroma row; libjpeg replicates it down to whole blocks
    for row in range(last + 1, mh * BLOCK):
        chroma[:, row % BLOCK, :, row // BLOCK] = chroma[:, last % BLOCK, :, last // BLOCK]

    # --- DCT and quantisation
    tmp = scratch("luma_tmp", 2, BLOCK, p)
    luma_coef = scratch("luma_coef", 2, BLOCK, p // BLOCK, BLOCK)
    _forward(luma.reshape(2, BLOCK, p), m.luma_fwd, m, luma_coef, tmp)
    luma_coef[:, 0, :, 0] -= m.luma_dc  # level shift -128, folded into DC (chroma is centred already)
    np.rint(luma_coef, out=luma_coef)
    # chroma coefficients get two extra columns for the neighbouring blocks' edge samples (see below)
    chroma_coef = scratch("chroma_coef", 2, BLOCK, pc // BLOCK, BLOCK + 2)
    _forward(chroma.reshape(2, BLOCK, pc), m.chroma_fwd, m, chroma_coef[..., :BLOCK], tmp[:, :, :pc])
    with np.errstate(all="ignore"):  # the two extra columns hold stale values here, overwritten below
        np.rint(chroma_coef, out=chroma_coef)

    # --- decoder: luma, clamped and rounded as libjpeg's inverse DCT output
    _inverse_luma(luma_coef, m, luma.reshape(2, BLOCK, p), tmp)
    luma_t.clamp_(0, MAX_SAMPLE).round_()

    # chroma: the horizontal upsampling of a block's edge columns needs the neighbouring blocks' edge
    # samples; they are computed per block (first and last column) and stored next to each block's
    # coefficients, replicated at the image edges, so that one matrix product does IDCT + upsampling.
    edges = scratch("chroma_edges", 2, BLOCK, pc // BLOCK, 2)
    np.matmul(chroma_coef[..., :BLOCK], m.chroma_edges, out=edges)
    edges = edges.reshape(2, BLOCK, n * mh, mw, 2)
    coef = chroma_coef.reshape(2, BLOCK, n * mh, mw, BLOCK + 2)
    coef[:, :, :, 1:, BLOCK] = edges[:, :, :, :-1, 1]  # last column of the block to the left
    coef[:, :, :, 0, BLOCK] = edges[:, :, :, 0, 0]
    coef[:, :, :, :-1, BLOCK + 1] = edges[:, :, :, 1:, 0]  # first column of the block to the right
    coef[:, :, :, -1, BLOCK + 1] = edges[:, :, :, -1, 1]
    np.matmul(chroma_coef, m.chroma_inv, out=tmp.reshape(2, BLOCK, pc // BLOCK, 2 * BLOCK))
    full = scratch("chroma_full", 2, 2 * BLOCK, p)  # full-resolution Cb, Cr (centred)
    np.matmul(m.chroma_rows, tmp, out=full)
    # vertical upsampling across MCU rows: the first / last output row of an MCU used its own edge row
    # (replication); mix in 1/4 of the neighbouring MCU's edge row instead, except at the image edges
    tiles = torch.from_numpy(full).view(2, 2 * BLOCK, n, mh, wp)
    step = torch.from_numpy(scratch("chroma_step", 2, n, mh - 1, wp))
    torch.sub(tiles[:, 0, :, 1:], tiles[:, -1, :, :-1], out=step)
    tiles[:, 0, :, 1:].sub_(step, alpha=FAR)
    tiles[:, -1, :, :-1].add_(step, alpha=FAR)

    # --- YCbCr -> RGB into ``out`` (natural layout), rounded and clamped
    y = luma_t.permute(1, 2, 0, 3)
    cb, cr = tiles[0].permute(1, 2, 0, 3), tiles[1].permute(1, 2, 0, 3)
    rgb = out_t.view(n, 3, mh, 2 * BLOCK, wp)
    torch.add(y, cr, alpha=CR_TO_R, out=rgb[:, 0])
    torch.add(y, cb, alpha=CB_TO_G, out=rgb[:, 1])
    rgb[:, 1].add_(cr, alpha=CR_TO_G)
    torch.add(y, cb, alpha=CB_TO_B, out=rgb[:, 2])
    out_t.round_().clamp_(0, MAX_SAMPLE)
