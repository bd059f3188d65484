"""cgc.encode, cgc.decode and cgc.lossless.decode from 8 Python threads at once give the
same bytes and pixels as serial calls: the compiled code releases the GIL, so any state it
shared between calls would show here.  Each thread runs every job, in its own order, after
a barrier, so the calls overlap."""
import threading

import numpy as np
import pytest
import skimage.data

import cgc

THREADS = 8


@pytest.fixture(scope="module")
def jobs():
    rng = np.random.default_rng(3)
    crop = np.ascontiguousarray(skimage.data.astronaut()[100:164, 200:264])
    noisy = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
    weights = rng.normal(size=(300, 200)).astype(np.float32)
    encodes = {f"encode {i}": (lambda image=image: cgc.encode(
        image, n_gaussians=48, iterations=30, progress=False))
        for i, image in enumerate((crop, noisy))}
    files = {name: job() for name, job in encodes.items()}
    decodes = {f"decode {name}": (lambda data=data: cgc.decode(data))
               for name, data in files.items()}
    decodes["decode resized"] = lambda: cgc.decode(files["encode 0"], size=(100, 90))
    packed = {"weights": cgc.lossless.encode(weights, tile=(64, 64)),
              "image": cgc.lossless.encode(crop, image=True)}
    lossless = {f"lossless {name}": (lambda data=data: cgc.lossless.decode(data))
                for name, data in packed.items()}
    return {**encodes, **decodes, **lossless}


def same(a, b):
    if isinstance(a, bytes):
        return a == b
    return a.dtype == b.dtype and np.array_equal(a, b)


def test_concurrent_calls_match_serial_ones(jobs):
    serial = {name: job() for name, job in jobs.items()}
    names = list(jobs)
    barrier = threading.Barrier(THREADS)
    results = [dict() for _ in range(THREADS)]
    errors = []

    def worker(k):
        try:
            barrier.wait()
            # Thread k starts at job k: at any moment different jobs run side by side.
            for name in names[k % len(names):] + names[:k % len(names)]:
                results[k][name] = jobs[name]()
        except BaseException as exc:  # reported below, with the thread
            errors.append((k, exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for k, result in enumerate(results):
        assert result.keys() == serial.keys()
        for name, value in result.items():
            assert same(value, serial[name]), f"thread {k}: {name} differs from serial"
