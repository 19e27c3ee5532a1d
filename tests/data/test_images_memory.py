"""Reading an image folder costs memory for the result, not for the files: large photos checked against
a small model are read at the model's input size, one at a time, whatever their number.

Measured as the peak resident set size of a fresh process (``resource.getrusage``), above what the same
process held after building its model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

resource = pytest.importorskip("resource")

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    import roadworthy

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2)).eval()
    program = torch.export.export(net, (torch.rand(4, 3, 32, 32),))  # declares its 32x32 input
    roadworthy.check(program, (torch.rand(8, 3, 32, 32).numpy(), [0, 1] * 4), suites=["sanity"])  # warm-up
    before = peak_mb()
    report = roadworthy.check(program, sys.argv[1], suites=["sanity"], budget="quick")
    print(json.dumps({"before": before, "after": peak_mb(), "shape": report.data.input_shape}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux")
def test_a_folder_of_large_photos_is_read_in_bounded_memory(tmp_path):
    from PIL import Image

    h, w = 1500, 2000
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    pixels[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    for i in range(20):
        folder = tmp_path / "photos" / ("day" if i % 2 else "night")
        folder.mkdir(parents=True, exist_ok=True)
        pixels[..., 2] = 8 * i
        image = Image.fromarray(pixels)
        if i < 2:
            image.save(folder / f"{i}.png", compress_level=1)  # PNG has no reduced decoding: full size
        else:
            image.save(folder / f"{i}.jpg", quality=80)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "photos")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [3, 32, 32]
    # 20 photos of 9 MB each: read at their own size (and stacked as floats) they took well over 700 MB;
    # one decode at a time stays within a few tens of MB
    assert result["after"] - result["before"] < 100, result
