"""The command line (cgc.cli.main and python -m cgc): encode / decode / info and its error
reporting (exit code 1 and exactly one `cgc: error:` line on stderr)."""
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

import cgc
from cgc.image.container import unpack
import cgc.cli
from cgc.cli import main
from cgc.metrics import ms_ssim, psnr, ssim
from cgc.image.quantize import ATTRIBUTES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 40
FAST = ["-n", str(N), "--iterations", "50", "--no-progress"]  # 50: the end of the warm-up


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A 32 x 28 PNG and its .cgc, encoded once through the CLI for the module."""
    root = tmp_path_factory.mktemp("cli")
    image = np.ascontiguousarray(skimage.data.astronaut()[120:148, 210:242])
    assert image.shape == (28, 32, 3)
    png = root / "in.png"
    Image.fromarray(image).save(png)
    return root, png, image


@pytest.fixture(scope="module")
def encoded(workdir):
    root, png, _ = workdir
    out = root / "out.cgc"
    assert main(["encode", str(png), str(out)] + FAST) == 0
    return out


def assert_one_error_line(capsys, code):
    captured = capsys.readouterr()
    assert code == 1, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cgc: error: "), captured.err
    assert len(lines[0]) > len("cgc: error: ")  # says what went wrong
    return lines[0]


def test_encode_writes_a_decodable_file(workdir, capsys):
    root, png, image = workdir
    out = root / "enc.cgc"
    assert main(["encode", str(png), str(out)] + FAST) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --no-progress: nothing on stderr
    data = out.read_bytes()
    assert str(out) in captured.out and f"{len(data)} bytes" in captured.out
    assert f"{8 * len(data) / (28 * 32):.3f} bpp" in captured.out
    packed = unpack(data)
    assert (packed.width, packed.height, packed.codes.shape[0]) == (32, 28, N)
    # Same bytes as the library call with the same settings (the CLI adds nothing).
    assert data == cgc.encode(image, n_gaussians=N, iterations=50, seed=0, progress=False)
    nearest = root / "nearest.cgc"
    assert main(["encode", str(png), str(nearest), "--no-refine"] + FAST) == 0
    assert nearest.read_bytes() == cgc.encode(image, n_gaussians=N, iterations=50, seed=0,
                                              progress=False, refine=False) != data
    one_stage = root / "one_stage.cgc"
    assert main(["encode", str(png), str(one_stage), "--coarse-iterations", "0"] + FAST) == 0
    assert one_stage.read_bytes() == cgc.encode(image, n_gaussians=N, iterations=50, seed=0,
                                                progress=False, coarse_iterations=0) != data
    capsys.readouterr()


@pytest.mark.parametrize("budget", [["--max-bytes", "400"], ["--bpp", "3.5"]])
def test_encode_within_a_byte_budget(workdir, capsys, budget):
    # 3.5 bpp over 32 x 28 pixels is 392 bytes; -n left to the budget.
    root, png, image = workdir
    out = root / "budget.cgc"
    assert main(["encode", str(png), str(out), "--iterations", "50", "--no-progress"]
                + budget) == 0
    cap = 400 if budget[0] == "--max-bytes" else 392
    data = out.read_bytes()
    assert len(data) <= cap
    assert data == cgc.encode(image, iterations=50, seed=0, progress=False, max_bytes=cap)
    capsys.readouterr()


def test_encode_budget_errors(workdir, capsys):
    root, png, _ = workdir
    out = str(root / "never.cgc")
    with pytest.raises(SystemExit):  # argparse: the two budgets exclude each other
        main(["encode", str(png), out, "--max-bytes", "400", "--bpp", "1"] + FAST)
    capsys.readouterr()
    for budget in (["--bpp", "0"], ["--bpp", "nan"], ["--bpp", "inf"], ["--max-bytes", "-3"],
                   ["--max-bytes", "120"]):
        line = assert_one_error_line(capsys, main(["encode", str(png), out] + FAST + budget))
        assert "bpp" in line or "max_bytes" in line, line
    # A bpp below the smallest file is reported in the user's terms, before any fit.
    line = assert_one_error_line(capsys, main(["encode", str(png), out, "--bpp", "1"] + FAST))
    assert "bpp=1.0 is 112 bytes for this 32x28 image" in line, line
    assert not (root / "never.cgc").exists()


def test_encode_to_a_psnr_target(workdir, capsys):
    root, png, image = workdir
    out = root / "quality.cgc"
    assert main(["encode", str(png), str(out), "--psnr", "27", "--iterations", "50",
                 "--no-progress"]) == 0
    data = out.read_bytes()
    reached = peak_signal_noise_ratio(image, cgc.decode(data), data_range=255)
    assert reached >= 27.0
    printed = capsys.readouterr().out
    assert f"{len(data)} bytes" in printed and f"{reached:.2f} dB" in printed, printed
    assert data == cgc.encode(image, iterations=50, seed=0, progress=False, psnr=27.0)


def test_encode_psnr_errors(workdir, capsys):
    root, png, _ = workdir
    out = str(root / "never.cgc")
    with pytest.raises(SystemExit):  # argparse: a quality target excludes a size budget
        main(["encode", str(png), out, "--psnr", "30", "--bpp", "4"] + FAST)
    capsys.readouterr()
    line = assert_one_error_line(capsys, main(["encode", str(png), out, "--psnr", "30"] + FAST))
    assert "give psnr or n_gaussians" in line, line
    for value in ("0", "-4", "nan"):
        line = assert_one_error_line(capsys, main(["encode", str(png), out, "--psnr", value,
                                                   "--no-progress"]))
        assert "psnr must be a positive number" in line, line
    assert not (root / "never.cgc").exists()


def test_decode_writes_the_decoded_png(encoded, workdir, capsys):
    root, _, image = workdir
    png = root / "dec.png"
    assert main(["decode", str(encoded), str(png)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "32x28" in captured.out
    with Image.open(png) as img:
        assert img.size == (32, 28) and img.mode == "RGB"
        decoded = np.asarray(img)
    assert np.array_equal(decoded, cgc.decode(encoded.read_bytes()))
    # A real reconstruction, not a blank: closer to the input than its mean colour.
    flat = np.broadcast_to(image.reshape(-1, 3).mean(axis=0), image.shape)
    err = np.mean((decoded.astype(float) - image) ** 2)
    assert err < np.mean((flat - image) ** 2)


def test_info_describes_a_lossless_stream(tmp_path, capsys):
    import cgc.lossless

    path = tmp_path / "a.cgcl"
    array = np.arange(10000, dtype=np.int16).reshape(100, 100)
    path.write_bytes(cgc.lossless.encode(array, tile=(32, 32), predictors=("left",)))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "array       int16 (100, 100)" in out
    assert "tiles       16 of 32x32" in out
    # A ramp along rows, left prediction offered: every tile takes it over none.
    assert "predictors  left=16\n" in out


def test_info_reports_size_count_bpp_and_streams(encoded, capsys):
    data = encoded.read_bytes()
    assert main(["info", str(encoded)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^size\s+{len(data)} bytes$", out, re.M), out
    assert re.search(r"^image\s+32x28$", out, re.M), out
    assert re.search(rf"^gaussians\s+{N}$", out, re.M), out
    assert re.search(rf"^bpp\s+{8 * len(data) / (32 * 28):.4f}$", out, re.M), out
    packed = unpack(data)
    assert re.search(r"^version\s+3$", out, re.M), out
    widths = " ".join(f"{name}={q.bits}" for name, q in zip(ATTRIBUTES, packed.quantisers))
    assert re.search(rf"^code bits\s+{widths}$", out, re.M), out
    sizes = packed.stream_sizes
    assert list(sizes) == ["positions", "l11", "l21", "l22", "Y", "Co", "Cg"]
    total = 0
    for name in sizes:
        match = re.search(rf"^\s+{name}\s+(\d+)$", out, re.M)
        assert match, f"no line for stream {name}:\n{out}"
        assert int(match.group(1)) == sizes[name]
        total += int(match.group(1))
    # The streams listed account for the whole file but the fixed-size tables and CRC.
    assert total == len(data) - (20 + 80 + 4 * len(sizes) + 4)


def test_encode_input_not_an_image(workdir, capsys):
    root, _, _ = workdir
    bad = root / "notes.png"
    bad.write_text("hello\n")
    line = assert_one_error_line(capsys, main(["encode", str(bad), str(root / "x.cgc")]
                                              + FAST))
    assert "notes.png" in line
    assert not (root / "x.cgc").exists()  # nothing written on failure


def test_encode_empty_file(workdir, capsys):
    root, _, _ = workdir
    empty = root / "empty.png"
    empty.write_bytes(b"")
    assert_one_error_line(capsys, main(["encode", str(empty), str(root / "e.cgc")] + FAST))


def test_encode_missing_file(workdir, capsys):
    root, _, _ = workdir
    assert_one_error_line(capsys, main(["encode", str(root / "nope.png"),
                                        str(root / "n.cgc")] + FAST))


@pytest.mark.parametrize("n", ["0", "-2", str(32 * 28 + 1)])
def test_encode_bad_gaussian_count(workdir, capsys, n):
    root, png, _ = workdir
    line = assert_one_error_line(
        capsys, main(["encode", str(png), str(root / "bad-n.cgc"), "-n", n,
                      "--iterations", "1", "--no-progress"]))
    assert ("pixel count" in line) if n == str(32 * 28 + 1) else ("at least 1" in line)


def test_encode_unwritable_output(workdir, capsys):
    root, png, _ = workdir
    assert_one_error_line(capsys, main(["encode", str(png), str(root / "no-dir" / "o.cgc")]
                                       + FAST))


def test_encode_decompression_bomb_png(workdir, capsys):
    # A tiny PNG declaring 100000 x 100000 pixels: Pillow raises DecompressionBombError,
    # which must end as one error line, not a traceback.
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    root, _, _ = workdir
    bomb = root / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    assert_one_error_line(capsys, main(["encode", str(bomb), str(root / "b.cgc")] + FAST))


@pytest.mark.parametrize("command", ["decode", "info"])
def test_truncated_cgc(encoded, workdir, capsys, command):
    root, _, _ = workdir
    data = encoded.read_bytes()
    for length in (0, 3, 30, len(data) // 2, len(data) - 1):
        cut = root / f"cut{length}.cgc"
        cut.write_bytes(data[:length])
        args = [command, str(cut)] + ([str(root / "cut.png")] if command == "decode" else [])
        assert_one_error_line(capsys, main(args))
    assert not (root / "cut.png").exists()


@pytest.mark.parametrize("command", ["decode", "info"])
def test_cgc_commands_on_missing_and_non_cgc_files(workdir, capsys, command):
    root, png, _ = workdir
    for path in (root / "missing.cgc", png):
        args = [command, str(path)] + ([str(root / "m.png")] if command == "decode" else [])
        assert_one_error_line(capsys, main(args))


def test_python_dash_m_entry_point(encoded, workdir):
    root, _, _ = workdir
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "cgc", "info", str(encoded)],
                        capture_output=True, text=True, env=env, cwd=str(root), timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert re.search(rf"^gaussians\s+{N}$", ok.stdout, re.M), ok.stdout
    bad = root / "garbage.cgc"
    bad.write_bytes(b"\x8bCGC" + bytes(40))
    fail = subprocess.run([sys.executable, "-m", "cgc", "info", str(bad)],
                          capture_output=True, text=True, env=env, cwd=str(root), timeout=120)
    assert fail.returncode != 0
    assert fail.stderr.startswith("cgc: error: ") and len(fail.stderr.splitlines()) == 1
    assert fail.stdout == ""


def test_encode_metrics(workdir, capsys):
    root, png, image = workdir
    out = root / "metrics.cgc"
    assert main(["encode", str(png), str(out), "--metrics"] + FAST) == 0
    line = capsys.readouterr().out
    decoded = cgc.decode(out.read_bytes())
    assert f"{psnr(image, decoded):.2f} dB" in line
    assert f"SSIM {ssim(image, decoded):.4f}" in line
    assert "MS-SSIM -" in line  # 32 x 28 is below MS-SSIM's five scales


def test_demo_prints_the_metrics_of_what_it_wrote(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out_dir), "--metrics", "-n", "60",
                 "--iterations", "20", "--no-progress"]) == 0
    text = capsys.readouterr().out
    with Image.open(cgc.cli.SAMPLE) as img:
        original = np.asarray(img.convert("RGB"))
    decoded = cgc.decode((out_dir / "demo.cgc").read_bytes())
    with Image.open(out_dir / "demo-decoded.png") as img:
        assert np.array_equal(np.asarray(img), decoded)
    values = dict(re.findall(r"^(PSNR|SSIM|MS-SSIM)\s+([0-9.]+)", text, re.M))
    assert values == {"PSNR": f"{psnr(original, decoded):.2f}",
                      "SSIM": f"{ssim(original, decoded):.4f}",
                      "MS-SSIM": f"{ms_ssim(original, decoded):.4f}"}


def run_cli(args, stdin=b""):
    """python -m cgc with bytes on standard input: (exit code, stdout bytes, stderr text)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "cgc"] + args, input=stdin,
                          capture_output=True, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr.decode()


def test_standard_input_and_output(workdir, encoded):
    root, png, image = workdir
    code, out, err = run_cli(["encode", "-", "-"] + FAST, png.read_bytes())
    assert code == 0, err
    assert out == cgc.encode(image, n_gaussians=N, iterations=50, seed=0, progress=False)
    assert err.startswith("(stdout): ") and f"{len(out)} bytes" in err  # report off stdout
    code, decoded, err = run_cli(["decode", "-", "-"], encoded.read_bytes())
    assert code == 0, err
    with Image.open(io.BytesIO(decoded)) as img:
        assert img.format == "PNG"
        assert np.array_equal(np.asarray(img), cgc.decode(encoded.read_bytes()))
    code, out, err = run_cli(["info", "-", "--json"], encoded.read_bytes())
    assert code == 0 and json.loads(out)["gaussians"] == N
    code, out, err = run_cli(["decode", "-", "-"], b"not a cgc file")
    assert code == 1 and out == b"" and err.startswith("cgc: error: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("extension, format", [(".png", "PNG"), (".tif", "TIFF"),
                                               (".jpg", "JPEG"), (".webp", "WEBP")])
def test_decode_writes_the_format_of_the_extension(encoded, tmp_path, capsys, extension,
                                                   format):
    out = tmp_path / f"decoded{extension}"
    assert main(["decode", str(encoded), str(out)]) == 0
    with Image.open(out) as img:
        assert img.format == format and img.size == (32, 28)
        if format in ("PNG", "TIFF"):  # lossless: the decoded pixels exactly
            assert np.array_equal(np.asarray(img), cgc.decode(encoded.read_bytes()))


def test_decode_to_an_unknown_extension(encoded, tmp_path, capsys):
    line = assert_one_error_line(capsys, main(["decode", str(encoded),
                                               str(tmp_path / "x.nope")]))
    assert "'.nope'" in line and not (tmp_path / "x.nope").exists()


def test_several_inputs_into_a_directory(workdir, encoded, tmp_path, capsys):
    root, png, image = workdir
    flipped = tmp_path / "flipped.png"
    Image.fromarray(image[::-1]).save(flipped)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["encode", str(png), str(flipped), "-o", str(out_dir)] + FAST) == 0
    assert (out_dir / "in.cgc").read_bytes() == cgc.encode(
        image, n_gaussians=N, iterations=50, progress=False)
    assert (out_dir / "flipped.cgc").read_bytes() == cgc.encode(
        np.ascontiguousarray(image[::-1]), n_gaussians=N, iterations=50, progress=False)
    assert main(["decode", str(out_dir / "in.cgc"), str(out_dir / "flipped.cgc"),
                 "-o", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "flipped.cgc", "flipped.png", "in.cgc", "in.png"]
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["a.png", "b.png", "c.cgc"], "INPUT OUTPUT, or INPUT... -o DIR"),
    (["a.png"], "INPUT OUTPUT, or INPUT... -o DIR"),
    (["-", "-o", "{dir}"], "standard input"),
    (["a.png", "-o", "{dir}/missing"], "not a directory"),
    (["a.png", "sub/a.png", "-o", "{dir}"], "same output"),
])
def test_path_errors(tmp_path, capsys, args, message):
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    line = assert_one_error_line(capsys, main(["encode"] + args + FAST))
    assert message in line


def test_info_json(encoded, capsys):
    assert main(["info", str(encoded), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    packed = unpack(encoded.read_bytes())
    assert info["file"] == str(encoded) and info["format"] == "cgc"
    assert (info["width"], info["height"], info["gaussians"]) == (32, 28, N)
    assert info["bytes"] == len(encoded.read_bytes())
    assert info["stream_bytes"] == dict(packed.stream_sizes)
    assert info["code_bits"] == {name: q.bits for name, q in zip(ATTRIBUTES,
                                                                 packed.quantisers)}


def test_encode_tune(workdir, capsys):
    root, png, image = workdir
    out = root / "tuned.cgc"
    assert main(["encode", str(png), str(out), "--tune", "ssim"] + FAST) == 0
    assert out.read_bytes() == cgc.encode(image, n_gaussians=N, iterations=50,
                                          progress=False, tune="ssim")
    capsys.readouterr()
