"""cgc.batch: image trees encoded by a Dask cluster equal serial cgc.encode calls; a bad
input, a killed worker, an interrupted run and a corrupt output are each survived; the
manifest, --decode and the command line's errors.

One LocalCluster of two process workers (cgc.batch.local_cluster) serves the module; the
images are tiny crops and the fits short, so that the cluster's start dominates."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image

distributed = pytest.importorskip("distributed")

import cgc  # noqa: E402
from cgc import batch  # noqa: E402
from cgc.imageio import load_image, to_uint8  # noqa: E402
from cgc.metrics import psnr  # noqa: E402

OPTIONS = dict(n_gaussians=20, iterations=20, seed=3)
FAST = ["-n", "20", "--iterations", "20", "--seed", "3", "--no-progress"]
# Images in several formats and folders; "notes.txt" is no image, "bad.png" is truncated.
IMAGES = ["a.png", "sub/b.jpg", "sub/deeper/c.png", "sub/deeper/d.bmp", "e.tif"]
BAD = "sub/bad.png"


@pytest.fixture(scope="module")
def client():
    with batch.local_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def make_tree(root):
    """IMAGES (distinct 24x20 crops), BAD and a text file under ``root``."""
    astronaut = skimage.data.astronaut()
    for i, name in enumerate(IMAGES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(astronaut[60 * i:60 * i + 20,
                                                       50 * i:50 * i + 24])).save(path)
    whole = (root / "a.png").read_bytes()
    (root / BAD).write_bytes(whole[:len(whole) // 2])
    (root / "notes.txt").write_text("not an image\n")
    return root


def cgc_name(name):
    return os.path.splitext(name)[0] + ".cgc"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("batch") / "src")


@pytest.fixture(scope="module")
def serial(source):
    """What cgc.encode makes of each image in this process, one after another."""
    return {name: cgc.encode(load_image(str(source / name)), progress=False, **OPTIONS)
            for name in IMAGES}


@pytest.fixture(scope="module")
def encoded(client, source, tmp_path_factory):
    dst = tmp_path_factory.mktemp("batch") / "dst"
    records = batch.encode_tree(source, dst, client=client, progress=False, **OPTIONS)
    return dst, records


def manifest(dst):
    with open(dst / batch.MANIFEST) as f:
        return [json.loads(line) for line in f]


def files_under(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                  for folder, _, names in os.walk(root) for name in names)


def assert_outputs_equal(dst, serial):
    for name, data in serial.items():
        assert (dst / cgc_name(name)).read_bytes() == data, name


def test_workers_split_the_cores():
    """Each of the two workers' compiled loops gets half the cores (one at least)."""
    before = os.environ.get("OMP_NUM_THREADS")
    expected = int(before or max(1, batch.cores() // 2))
    with batch.local_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        counts = client.run(_max_threads)
    assert list(counts.values()) == [expected, expected]
    assert os.environ.get("OMP_NUM_THREADS") == before  # Dask's setting undone


def _max_threads():
    from cgc.native import threads

    return threads.max_threads()


def test_outputs_equal_serial_encodes(encoded, source, serial, client):
    dst, records = encoded
    assert files_under(dst) == sorted([batch.MANIFEST] + [cgc_name(n) for n in IMAGES])
    assert_outputs_equal(dst, serial)
    assert manifest(dst) == records
    by_source = {record["source"]: record for record in records}
    assert sorted(by_source) == sorted(IMAGES + [BAD])
    assert by_source[BAD]["status"] == "failed"
    assert "truncated" in by_source[BAD]["error"]
    workers = set(client.scheduler_info()["workers"])
    for name in IMAGES:
        record = by_source[name]
        data = serial[name]
        image = to_uint8(load_image(str(source / name)))
        height, width = image.shape[:2]
        assert record["status"] == "encoded" and record["error"] is None
        assert record["output"] == cgc_name(name)
        assert record["source_bytes"] == os.path.getsize(source / name)
        assert record["output_bytes"] == len(data)
        assert record["bpp"] == pytest.approx(8 * len(data) / (height * width), abs=1e-4)
        assert record["psnr"] == pytest.approx(psnr(image, cgc.decode(data)), abs=1e-3)
        assert record["seconds"] > 0 and record["worker"] in workers


def test_command_line_on_a_local_cluster(source, serial, tmp_path, capsys):
    """cgc batch starts its own cluster; the bad input makes it end with one error line."""
    dst = tmp_path / "out"
    assert batch.main([str(source), str(dst), *FAST, "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{dst}: 6 images, 5 encoded, 0 skipped, 1 failed, ")
    assert captured.err.splitlines() == [
        f"cgc: error: 1 of 6 images failed (see {dst / batch.MANIFEST})"]
    assert_outputs_equal(dst, serial)


def test_killed_worker(client, source, serial, tmp_path):
    """A worker that dies as it renames its first output: its task runs again, every
    image is encoded once in the manifest, and its temporary file is cleaned up."""
    marker = tmp_path / "killed"

    def kill_at_first_rename(marker):
        import os

        rename = os.replace

        def replace(source, target, *args, **kwargs):
            if str(target).endswith(".cgc"):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:  # one death in the cluster is enough
                    pass
                else:
                    os._exit(1)
            return rename(source, target, *args, **kwargs)

        os.replace = replace

    client.run(kill_at_first_rename, str(marker))
    dst = tmp_path / "dst"
    records = batch.encode_tree(source, dst, client=client, progress=False, **OPTIONS)
    assert marker.exists()
    assert sorted(record["source"] for record in records) == sorted(IMAGES + [BAD])
    assert [r["status"] for r in records].count("encoded") == len(IMAGES)
    assert files_under(dst) == sorted([batch.MANIFEST] + [cgc_name(n) for n in IMAGES])
    assert_outputs_equal(dst, serial)
    # The nanny restarted the dead worker, with the same share of the cores.
    client.wait_for_workers(2, timeout=60)
    assert len(set(client.run(_max_threads).values())) == 1


def test_resume_skips_whole_outputs_and_redoes_the_rest(client, encoded, source, serial,
                                                        tmp_path):
    dst = tmp_path / "dst"
    shutil.copytree(encoded[0], dst)
    corrupt, missing = cgc_name(IMAGES[1]), cgc_name(IMAGES[2])
    data = bytearray((dst / corrupt).read_bytes())
    data[len(data) // 2] ^= 0x10  # the CRC no longer checks
    (dst / corrupt).write_bytes(bytes(data))
    (dst / missing).unlink()
    stale = dst / "sub" / f".b.cgc.0badf00d{batch.TEMP_SUFFIX}"  # a killed run's
    stale.write_bytes(b"half")
    kept = {cgc_name(n): os.stat(dst / cgc_name(n)).st_mtime_ns for n in IMAGES
            if cgc_name(n) not in (corrupt, missing)}

    records = batch.encode_tree(source, dst, client=client, progress=False, **OPTIONS)
    status = {record["source"]: record["status"] for record in records}
    assert status == {**{n: "skipped" for n in IMAGES}, IMAGES[1]: "encoded",
                      IMAGES[2]: "encoded", BAD: "failed"}
    assert {name: os.stat(dst / name).st_mtime_ns for name in kept} == kept
    assert_outputs_equal(dst, serial)
    assert not stale.exists()
    lines = manifest(dst)
    assert lines[-len(records):] == records and len(lines) == 2 * len(records)
    skipped = next(r for r in records if r["source"] == IMAGES[0])
    assert skipped["output_bytes"] == len(serial[IMAGES[0]]) and skipped["psnr"] is None


def test_decode_round_trip(client, encoded, tmp_path, capsys):
    dst, _ = encoded
    out = tmp_path / "png"
    records = batch.decode_tree(dst, out, client=client, progress=False)
    assert sorted(r["source"] for r in records) == sorted(cgc_name(n) for n in IMAGES)
    assert {r["status"] for r in records} == {"decoded"}
    for name in IMAGES:
        png = out / (os.path.splitext(name)[0] + ".png")
        expected = cgc.decode((dst / cgc_name(name)).read_bytes())
        assert np.array_equal(np.asarray(Image.open(png)), expected), name
    # Again through the command line, on the same cluster by its address: all done already.
    code = batch.main([str(dst), str(out), "--decode", "--no-progress",
                       "--scheduler", client.scheduler.address])
    assert code == 0
    assert capsys.readouterr().out.startswith(f"{out}: 5 images, 0 decoded, 5 skipped, "
                                              "0 failed, ")


@pytest.mark.parametrize("arguments, message", [
    (["{missing}", "{dst}"], "not a directory"),
    (["{empty}", "{dst}"], "no images under"),
    (["{src}", "{dst}", "--workers", "0"], "positive integer"),
    (["{src}", "{dst}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "--workers sizes the local cluster"),
    (["{src}", "{dst}", "--decode", "-n", "5"], "--decode takes no encode options"),
    (["{src}", "{dst}", "--bpp", "0"], "bpp must be positive"),
    (["{src}", "{dst}", "-q", "120"], "quality must be a number from 0 to 100"),
])
def test_command_line_errors(arguments, message, source, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = dict(missing=tmp_path / "missing", empty=tmp_path / "empty", src=source,
                 dst=tmp_path / "dst")
    code = batch.main([a.format(**paths) for a in arguments])
    assert_one_error_line(capsys, code, message)


def test_missing_dask_is_one_line(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    code = batch.main([str(source), str(tmp_path / "dst")])
    assert_one_error_line(capsys, code, 'pip install "cgc[batch]"')
    with pytest.raises(ModuleNotFoundError, match=r'pip install "cgc\[batch\]"'):
        batch.encode_tree(source, tmp_path / "dst")


def assert_one_error_line(capsys, code, message):
    captured = capsys.readouterr()
    assert code == 1, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cgc: error: "), captured.err
    assert message in lines[0]


def test_importing_cgc_imports_no_dask():
    code = ("import sys, cgc, cgc.batch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def dask_command():
    return shutil.which("dask", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                      os.environ.get("PATH", "")]))


@pytest.mark.skipif(dask_command() is None, reason="needs the dask command")
def test_scheduler_and_worker_started_apart(source, serial, tmp_path, capsys):
    """`dask scheduler` and `dask worker ADDRESS` as separate processes, as on a cluster."""
    scheduler_file = tmp_path / "scheduler.json"
    processes = []
    try:
        processes.append(subprocess.Popen(
            [dask_command(), "scheduler", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = wait_for_address(scheduler_file, processes[0])
        processes.append(subprocess.Popen(
            [dask_command(), "worker", address, "--nthreads", "1", "--no-dashboard"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
        dst = tmp_path / "dst"
        code = batch.main([str(source), str(dst), *FAST, "--scheduler", address])
        assert code == 1 and "1 of 6 images failed" in capsys.readouterr().err
        assert_outputs_equal(dst, serial)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


def wait_for_address(scheduler_file, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):  # not written yet, or half written
            time.sleep(0.1)
    raise AssertionError("the scheduler did not start")
