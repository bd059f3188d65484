"""A child forked after the parent used cgc (OpenMP threads started) decodes and encodes
like the parent instead of hanging (cgc/native/threads.h).

The scenario runs in a fresh interpreter with OMP_NUM_THREADS=4, so the parent really
starts a team of threads however many cores the test machine has; the child is made by
multiprocessing's "fork" start method and joined under a timeout, so a hang fails the test
instead of stalling the suite."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

SCENARIO = textwrap.dedent("""
    import multiprocessing as mp
    import sys

    import numpy as np

    import cgc
    from cgc.native import threads

    rng = np.random.default_rng(7)
    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    array = rng.integers(0, 50, size=(64, 96), dtype=np.int16)

    def work():
        data = cgc.encode(image, n_gaussians=40, iterations=20, progress=False)
        packed = cgc.lossless.encode(array)
        return data, cgc.decode(data), cgc.lossless.decode(packed)

    def child(conn):
        conn.send((threads.forked_single_thread(), threads.max_threads(), work()))
        conn.close()

    assert threads.max_threads() == 4, threads.max_threads()
    parent = work()
    assert not threads.forked_single_thread()
    receive, send = mp.get_context("fork").Pipe(duplex=False)
    process = mp.get_context("fork").Process(target=child, args=(send,))
    process.start()
    if not receive.poll(%(timeout)d):
        process.kill()
        sys.exit("the forked child did not finish: hung")
    single, team, result = receive.recv()
    process.join()
    assert single and team == 1, (single, team)
    assert result[0] == parent[0], "the child's encode differs"
    assert np.array_equal(result[1], parent[1]), "the child's decode differs"
    assert np.array_equal(result[2], array) and np.array_equal(parent[2], array)
    # The parent, which forked, keeps its threads.
    assert threads.max_threads() == 4 and np.array_equal(cgc.decode(parent[0]), parent[1])
    print("ok")
""")


def test_forked_child_after_use_decodes_and_encodes_like_the_parent():
    # 60 s for the child: its work takes well under a second; only a hang runs that long.
    env = dict(os.environ, OMP_NUM_THREADS="4")
    run = subprocess.run([sys.executable, "-c", SCENARIO % {"timeout": 60}], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")
