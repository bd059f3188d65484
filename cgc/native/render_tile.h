/* The CPU renderer's loops: Gaussian boxes, row spans, per-pixel weights, and the forward
and backward passes over tiles, called by cgc/_core.pyx.  Read me first: this note, the
four after it, and the one on the public entry points.

A Gaussian is a row of the packed (N, 8) array: x, y, l11, l21, l22, r, g, b, in pixels.
L = [[l11, 0], [l21, l22]] is the Cholesky factor of its covariance, so q = u^2 + v^2 with
u = dx / l11, v = (dy - l21 u) / l22.  Pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5). */

/* A Gaussian adds colour * exp(-q / 2) to a pixel exactly when the pixel is in its box and
q <= CGC_CUTOFF_Q.  The box, the tiles and the per-row spans only find those pixels
conservatively, so the image does not depend on the tiling at all: each pixel's terms are
added in pair order, which is increasing Gaussian index in every tiling. */

/* Tiles are tile x tile pixels in row-major order, of the size the caller's binning chose
(bin_gaussians in cgc/_core.pyx; the CPU backend's 32, the CUDA kernels' 16).  A tile's
pair list holds the indices of the Gaussians whose box touches it, in increasing index,
with no cap on its length. */

/* u, v and q are evaluated in the parameters' precision, one rounded operation at a time
in the order of the CUDA helpers (kernels/common.cuh), so float32 renders agree with the
kernels on which pixels pass q <= 9.  The build turns off FMA contraction for that. */

/* The pixel loops run over a row piece of a tile in chunks of CGC_LANES columns with no
branches: q is evaluated for every lane, the weight of the clamped q computed, and a lane's
terms masked to 0 where q > 9 or the lane is past the piece's end.  Buffers have CGC_LANES
values of slack for the last chunk.  The compiler vectorises the chunks (`omp simd`); on
x86-64 they are built twice, for the baseline and for AVX2, and cgc_render_init() picks one
at import.  Each lane's arithmetic is the same in both, so they give the same bits. */
#ifndef CGC_RENDER_TILE_H
#define CGC_RENDER_TILE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* CGC_CUTOFF_Q, CGC_MIN_CHOLESKY, the box and the float64 weight: gaussian_d.h, which the
   GPU's refinement shares. */
#include "gaussian_d.h"

/* Pixels per chunk of a row piece: the pixel loops run over whole chunks, lanes past the
   piece's end masked, so that no scalar remainder loop is left (row pieces are short). */
#define CGC_LANES 8

/* What the row spans of one Gaussian need, from its Cholesky factor: with covariance
   S = L L^T, the x of the ellipse q <= CGC_CUTOFF_Q on the row at offset dy from the centre
   is centred on x + slope dy and spans +- sqrt((CGC_CUTOFF_Q - dy^2 / Syy) var_x_given_y),
   where slope = Sxy / Syy and var_x_given_y = Sxx - Sxy^2 / Syy = det S / Syy. */
typedef struct {
    double slope, inv_syy, var_x_given_y;
} cgc_span_shape;

static inline cgc_span_shape cgc_span_shape_of(double l11, double l21, double l22) {
    cgc_span_shape shape;
    double syy = l21 * l21 + l22 * l22;
    shape.slope = l11 * l21 / syy;
    shape.inv_syy = 1.0 / syy;
    shape.var_x_given_y = l11 * l11 * l22 * l22 / syy;
    return shape;
}

/* Columns of the pixel row at offset dy from the centre (x, y) that may hold
   q <= CGC_CUTOFF_Q, intersected with [j_lo, j_hi]; *j0 > *j1 when none.  The span is
   widened by one pixel on each side, and the caller still tests q per pixel, so rounding
   here can never drop a pixel. */
static inline void cgc_row_span(double x, double dy, const cgc_span_shape *shape,
                                int j_lo, int j_hi, int *j0, int *j1) {
    double reach = (CGC_CUTOFF_Q - dy * dy * shape->inv_syy) * shape->var_x_given_y;
    double centre, half, lo, hi;
    if (!(reach >= 0.0)) {
        *j0 = 1;
        *j1 = 0;
        return;
    }
    half = sqrt(reach);
    centre = x + shape->slope * dy - 0.5;
    lo = centre - half;
    hi = centre + half;
    *j0 = lo > j_lo ? (int)floor(lo) : j_lo;
    *j1 = hi < j_hi ? (int)ceil(hi) + 1 : j_hi;
    if (*j0 < j_lo) *j0 = j_lo;
    if (*j1 > j_hi) *j1 = j_hi;
}

/* Tile t of a tiles_x-wide grid of tile x tile pixels, clipped to the image: its first
   row and column and its size. */
static inline void cgc_tile_rect(int64_t t, int tiles_x, int tile, int height, int width,
                                 int *ti0, int *tj0, int *rows, int *cols) {
    *ti0 = (int)(t / tiles_x) * tile;
    *tj0 = (int)(t % tiles_x) * tile;
    *rows = height - *ti0 < tile ? height - *ti0 : tile;
    *cols = width - *tj0 < tile ? width - *tj0 : tile;
}

/* A thread's zeroed buffer of `planes` planes of one tile (at most tile x tile pixels, and
   no larger than the image), with CGC_LANES values of slack for the last chunk of the
   last row piece; NULL when out of memory. */
static inline void *cgc_tile_scratch(int planes, size_t value_size, int tile, int height,
                                     int width) {
    const size_t most =
        (size_t)(tile < height ? tile : height) * (size_t)(tile < width ? tile : width);
    return calloc(planes * most + CGC_LANES, value_size);
}

/* The integer tricks below keep the pixel loops free of selects and conditional
   arithmetic, which the compiler's passes turn back into branches that stop the loops
   vectorising.  Bits of floats are read and written through unions.  These are the float
   twins of gaussian_d.h's. */
typedef union { float f; int32_t i; } cgc_bits_f;

/* value where mask is all ones, +0 where it is 0 (mask = -(condition)). */
static inline float cgc_keep_f(float value, int32_t mask) {
    cgc_bits_f v;
    v.f = value;
    v.i &= mask;
    return v.f;
}

/* min(|q|, CGC_CUTOFF_Q), CGC_CUTOFF_Q for inf and NaN of either sign, compared as
   integers: the bits of non-negative floats order as the values do.  So the weight below
   always gets an argument in [0, CGC_CUTOFF_Q], even for masked lanes. */
static inline float cgc_clamp_q_f(float q) {
    cgc_bits_f v, c;
    v.f = q;
    v.i &= INT32_MAX;
    c.f = (float)CGC_CUTOFF_Q;
    v.i = v.i < c.i ? v.i : c.i;
    return v.f;
}

/* 2^-n for 0 <= n <= 126, built from its exponent bits. */
static inline float cgc_pow2_neg_f(int n) {
    cgc_bits_f v;
    v.i = (int32_t)(127 - n) << 23;
    return v.f;
}

/* exp(-q / 2) in float, as cgc_weight_d (gaussian_d.h) in double, the Taylor series of
   2^f truncated at degree 7 (5e-9 relative): within a few ulps of exp (docs/tuning.md,
   "native/render_tile.h: footprint, lanes and exp"). */
static inline float cgc_weight_f(float q) {
    float t = q * (float)CGC_HALF_LOG2E;
    int n = (int)(t + 0.5f);
    float f = ((float)n - t) * (float)CGC_LN2;
    /* Estrin's scheme: pairs of terms evaluated side by side, four dependent steps
       instead of Horner's fourteen (the pixel loops wait on this chain). */
    float f2 = f * f, f4 = f2 * f2;
    float p01 = 1.0f + f, p23 = 0.5f + f * (1.0f / 6.0f);
    float p45 = 1.0f / 24.0f + f * (1.0f / 120.0f);
    float p67 = 1.0f / 720.0f + f * (1.0f / 5040.0f);
    float p = (p01 + f2 * p23) + f4 * (p45 + f2 * p67);
    return p * cgc_pow2_neg_f(n);
}

/* The tile loops, once per instruction set (render_tile_isa.h instantiates both
   precisions of render_tile_impl.h). */
#define CGC_NO_TARGET
#define CGC_ISA baseline
#include "render_tile_isa.h"
#undef CGC_NO_TARGET
#undef CGC_ISA

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CGC_HAVE_AVX2_BUILD 1
#define CGC_TARGET __attribute__((target("avx2")))
#define CGC_ISA avx2
#include "render_tile_isa.h"
#undef CGC_TARGET
#undef CGC_ISA
#endif

/* 1 when the AVX2 loops run (decided once by cgc_render_init), else 0. */
static int cgc_render_avx2 = 0;

/* Picks the loops for this CPU; use_avx2 = 0 forces the baseline ones (tests). */
static int cgc_render_init(int use_avx2) {
#ifdef CGC_HAVE_AVX2_BUILD
    __builtin_cpu_init();
    cgc_render_avx2 = use_avx2 && __builtin_cpu_supports("avx2");
#else
    (void)use_avx2;
    cgc_render_avx2 = 0;
#endif
    return cgc_render_avx2;
}

#define CGC_DISPATCH(name, suffix, args)                                  \
    (cgc_render_avx2 ? CGC_AVX2_CALL(name, suffix, args)                  \
                     : cgc_##name##_##suffix##_baseline args)
#ifdef CGC_HAVE_AVX2_BUILD
#define CGC_AVX2_CALL(name, suffix, args) cgc_##name##_##suffix##_avx2 args
#else
#define CGC_AVX2_CALL(name, suffix, args) cgc_##name##_##suffix##_baseline args
#endif

/* Public entry points: the whole image, tiles in parallel on ``threads`` threads (the
   caller's cgc.native.threads.team_size).  Return 0, or -1 when a
   thread's scratch buffer could not be allocated.  Colours accumulate in a tile-local
   planar buffer (r, g, b, weight planes) that stays in the L1 cache, written to the
   (H, W, 3) image once per tile.  Backward reads dL/dimage through the same planar layout,
   sums a pair's terms per lane in the parameters' precision, adds the lanes' sums in
   float64, and writes one float64 row of eight gradients per (tile, Gaussian) pair, which
   the caller reduces in pair order. */
static int cgc_render_forward_f(const float *params, int height, int width, int tile,
                                const int64_t *tile_start, int64_t n_tiles,
                                const int32_t *pairs, float *out, float *weight, int threads) {
    return CGC_DISPATCH(forward, float, (params, height, width, tile, tile_start, n_tiles,
                                         pairs, out, weight, threads));
}

static int cgc_render_forward_d(const double *params, int height, int width, int tile,
                                const int64_t *tile_start, int64_t n_tiles,
                                const int32_t *pairs, double *out, double *weight, int threads) {
    return CGC_DISPATCH(forward, double, (params, height, width, tile, tile_start, n_tiles,
                                          pairs, out, weight, threads));
}

static int cgc_render_backward_f(const float *params, int height, int width, int tile,
                                 const int64_t *tile_start, int64_t n_tiles,
                                 const int32_t *pairs, const float *grad_image,
                                 double *pair_grad, int threads) {
    return CGC_DISPATCH(backward, float, (params, height, width, tile, tile_start, n_tiles,
                                          pairs, grad_image, pair_grad, threads));
}

static int cgc_render_backward_d(const double *params, int height, int width, int tile,
                                 const int64_t *tile_start, int64_t n_tiles,
                                 const int32_t *pairs, const double *grad_image,
                                 double *pair_grad, int threads) {
    return CGC_DISPATCH(backward, double, (params, height, width, tile, tile_start, n_tiles,
                                           pairs, grad_image, pair_grad, threads));
}

#endif
