"""What a cgc file holds, for ``cgc info``: a dictionary (``--json``) and its text form.

Any of the four formats: a .cgc image, a .cgcv video, a cgc.lossless stream, a
cgc.lossless checkpoint, told apart by their magic; each is validated as a decoder would, without decoding."""
import numpy as np


def describe(data):
    """A JSON-ready dict of the file ``data``; FormatError when it is not a valid one."""
    from cgc.lossless import checkpoint, format as lossless_format
    from cgc.video import container as video_container

    if data[:4] == video_container.MAGIC:
        return _video(data)
    if data[:4] == lossless_format.MAGIC:
        return _lossless(data, lossless_format.parse(data))
    if data[:4] == checkpoint.MAGIC:
        return _checkpoint(data, *checkpoint.contents(data))
    return _image(data)


def _image(data):
    from cgc.image.container import VERSION_1_NAMES, unpack
    from cgc.image.layers import layer_info
    from cgc.image.quantize import ATTRIBUTES

    packed = unpack(data)
    n = int(packed.codes.shape[0])
    names = VERSION_1_NAMES if packed.version == 1 else ATTRIBUTES
    described = {"format": "cgc", "version": packed.version, "bytes": len(data),
                 "width": packed.width, "height": packed.height, "gaussians": n,
                 "bpp": 8 * len(data) / (packed.width * packed.height),
                 "bits_per_gaussian": 8 * len(data) / n,
                 "code_bits": {name: q.bits for name, q in zip(names, packed.quantisers)},
                 "stream_bytes": dict(packed.stream_sizes)}
    if packed.layers is not None:
        # Where each layer ends: the prefix a progressive viewer needs for it.
        described["layers"] = [{"gaussians": count, "end": end} for count, end in
                               zip(packed.layers, layer_info(data).ends)]
    return described


def _video(data):
    from cgc.video import info

    video = info(data)
    return {"format": "cgcv", "bytes": video.bytes, "width": video.width,
            "height": video.height, "frame_rate": list(video.rate), "frames": video.frames,
            "i_frames": video.i_frames, "p_frames": video.p_frames,
            "seconds": video.seconds, "bits_per_second": video.bits_per_second,
            "bpp": video.bits_per_pixel}


def _lossless(data, container):
    from cgc.lossless._lossless_cy import PREDICTORS

    names = {code: name for name, code in PREDICTORS.items()}
    original = int(np.prod(container.shape, dtype=np.int64)) * container.etype.nbytes
    used = np.bincount(container.meta["pred"])
    return {"format": "cgc.lossless", "bytes": len(data), "original_bytes": original,
            "dtype": container.etype.name, "shape": list(container.shape),
            "tiles": len(container.meta), "tile": list(container.tile),
            "predictors": {names.get(code, str(code)): int(count)
                           for code, count in enumerate(used) if count}}


def _checkpoint(data, file_size, tensors):
    by_dtype = {}
    for _, kind, _, stored in tensors:
        count, total = by_dtype.get(kind, (0, 0))
        by_dtype[kind] = (count + 1, total + stored)
    return {"format": "cgc.lossless checkpoint", "bytes": len(data),
            "original_bytes": file_size, "tensors": len(tensors),
            "by_dtype": {kind: {"tensors": count, "stored_bytes": total}
                         for kind, (count, total) in sorted(by_dtype.items())}}


def text(path, info):
    """The lines ``cgc info`` prints for ``describe``'s dict."""
    lines = [f"file        {path}"]
    if info["format"] == "cgc":
        lines += [f"size        {info['bytes']} bytes",
                  f"image       {info['width']}x{info['height']}",
                  f"gaussians   {info['gaussians']}",
                  f"bpp         {info['bpp']:.4f}",
                  f"bits/gauss  {info['bits_per_gaussian']:.2f}",
                  f"version     {info['version']}",
                  "code bits   " + " ".join(f"{k}={v}" for k, v in info["code_bits"].items()),
                  "streams (bytes):"]
        lines += [f"  {name:<12}{size:>8}" for name, size in info["stream_bytes"].items()]
        if "layers" in info:
            lines.append("layers (Gaussians, first bytes that decode them):")
            lines += [f"  {k + 1:<3}{layer['gaussians']:>8}{layer['end']:>10}"
                      for k, layer in enumerate(info["layers"])]
        return lines
    if info["format"] == "cgcv":
        numerator, denominator = info["frame_rate"]
        return lines + [f"size        {info['bytes']} bytes",
                        f"video       {info['width']}x{info['height']}, "
                        f"{numerator / denominator:.3f} frames/s ({numerator}/{denominator})",
                        f"frames      {info['frames']}: {info['i_frames']} I, "
                        f"{info['p_frames']} P",
                        f"duration    {info['seconds']:.2f} s",
                        f"bitrate     {info['bits_per_second'] / 1000:.1f} kbit/s, "
                        f"{info['bpp']:.4f} bpp"]
    share = 100 * info["bytes"] / max(info["original_bytes"], 1)
    lines.append(f"size        {info['bytes']} bytes, {share:.2f} % of "
                 f"{info['original_bytes']}")
    if info["format"] == "cgc.lossless":
        lines += [f"array       {info['dtype']} {tuple(info['shape'])}",
                  f"tiles       {info['tiles']} of {info['tile'][0]}x{info['tile'][1]}",
                  "predictors  " + " ".join(f"{k}={v}" for k, v in info["predictors"].items())]
        return lines
    lines += [f"tensors     {info['tensors']}", "by dtype    tensors  stored bytes"]
    lines += [f"  {kind:<10}{v['tensors']:>7}  {v['stored_bytes']:>12}"
              for kind, v in info["by_dtype"].items()]
    return lines
