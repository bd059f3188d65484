/* The refinement's inner loops (cgc/image/_refine_cy.pyx): a Gaussian's weights, and the
change in the clipped squared error when one Gaussian is replaced by another.  Everything
here is float64 (the refinement's working precision) and follows the conventions of
cgc/native/render_tile.h: the box, the cut-off q <= CGC_CUTOFF_Q, the pixel weight
cgc_refine_weight (cgc/native/gaussian_d.h, which the GPU's refinement shares), and the
pixel loops in chunks of CGC_LANES masked lanes, built for the baseline and for AVX2 and
picked by cgc_render_init(). */

/* render (3, H, W) float64 and target (3, H, W) float32, both as planes of channels, and
weights (H, W) float64 are read up to CGC_LANES pixels past a box's right edge, so their
buffers carry that much slack after their end (cgc/image/_refine_cy.pyx allocates them so).
Masked lanes add exactly 0: their weights are zeroed, so their old and new values are
equal. */
#ifndef CGC_REFINE_COST_H
#define CGC_REFINE_COST_H

#include "render_tile.h"

/* clip(v, 0, 1) for finite v, through the bits: negatives (and -0) become +0, then an
   integer minimum with 1.0, as the bits of non-negative doubles order as their values. */
static inline double cgc_clip01_d(double v) {
    cgc_bits_d b, one;
    b.f = v;
    b.i &= ~(b.i >> 63);
    one.f = 1.0;
    b.i = b.i < one.i ? b.i : one.i;
    return b.f;
}

#define CGC_NO_TARGET
#define CGC_ISA baseline
#include "_refine_cost_impl.h"
#undef CGC_NO_TARGET
#undef CGC_ISA

#ifdef CGC_HAVE_AVX2_BUILD
#define CGC_TARGET __attribute__((target("avx2")))
#define CGC_ISA avx2
#include "_refine_cost_impl.h"
#undef CGC_TARGET
#undef CGC_ISA
#endif

/* Change in the sum over pixels and channels of (clip(render) - target)^2 if Gaussian old,
   whose weights over its box are in weights (0 elsewhere), became new_: both are rows of
   8 float32 parameters, x, y, l11, l21, l22, r, g, b. */
static double cgc_move_cost(const double *render, const float *target, const double *weights,
                            const float *old, const float *new_, int height, int width) {
#ifdef CGC_HAVE_AVX2_BUILD
    if (cgc_render_avx2)
        return cgc_move_cost_avx2(render, target, weights, old, new_, height, width);
#endif
    return cgc_move_cost_baseline(render, target, weights, old, new_, height, width);
}

#endif
