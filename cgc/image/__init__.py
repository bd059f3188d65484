"""The image codec: an image fitted by 2D Gaussians, quantised, entropy-coded into a .cgc
file, decoded by splatting at any size.

Pipeline, one module a stage: ``model`` (the Gaussians), ``init`` (their start), ``fit``
(Adam on the rendered image, with ``relocate``), ``prune`` and ``grow`` (changing the
count), ``allocate`` (code widths by rate-distortion), ``quantize``, ``refine`` (the codes
against the image), ``rate`` (encoding to a quality target), ``presets`` (time against
quality, and the quality scale), ``container`` (the file), ``layers`` (progressive files)
and ``codec`` (``encode`` and ``decode``, which the package exports).  docs/design.md tells the
story."""
