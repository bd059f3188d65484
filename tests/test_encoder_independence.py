"""The bytes cgc.encode writes depend only on cgc, the image and the options: not on which
codecs the installed Pillow was built with (a JPEG 2000 probe through Pillow once steered
the Gaussian count)."""
import subprocess
import sys
import textwrap

import pytest

# A photo of at least 256 x 256 pixels: the size from which the encoder judges how
# detailed an image is before fitting, the judgement the probe used to make.
SCRIPT = textwrap.dedent("""
    import sys
    if sys.argv[1] == "blocked":
        sys.modules["PIL.Jpeg2KImagePlugin"] = None  # importing it now fails
    import hashlib
    import numpy as np
    import skimage.data
    import cgc
    from PIL import Image
    image = np.ascontiguousarray(skimage.data.astronaut()[100:356, 100:356])
    budget = cgc.encode(image, max_bytes=2500, iterations=8, coarse_iterations=8,
                        progress=False)
    target = cgc.encode(image[:64, :64], psnr=24.0, iterations=8, coarse_iterations=8,
                        progress=False)
    Image.init()
    print("JPEG2000" in Image.SAVE, hashlib.sha256(budget + target).hexdigest())
""")


def _run(mode):
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_same_bytes_without_pillows_jpeg2000_plugin():
    with_plugin = _run("normal")
    without = _run("blocked")
    if with_plugin[0] != "True":
        pytest.skip("this Pillow has no JPEG 2000 codec to take away")
    assert without[0] == "False"  # the plugin really was unavailable
    assert without[1] == with_plugin[1]
