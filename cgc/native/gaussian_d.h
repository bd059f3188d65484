/* One Gaussian's box and its per-pixel weight in float64, written once for the CPU's loops
(render_tile.h, cgc/image/_refine_cost.h) and the GPU's refinement (cgc/kernels/refine.cu),
so that the two take the same steps bit for bit.  The conventions are render_tile.h's (read
its notes): a Gaussian is x, y, l11, l21, l22, r, g, b; q = u^2 + v^2 with u = dx / l11,
v = (dy - l21 u) / l22; pixel (i, j) has its centre at (j + 0.5, i + 0.5).

NVRTC compiles this file with no host headers: it includes nothing, and a C includer brings
<math.h> first.  The integer tricks keep the CPU's pixel loops free of selects, which the
compiler would turn back into branches that stop the loops vectorising; bits of doubles are
read and written through a union. */
#ifndef CGC_GAUSSIAN_D_H
#define CGC_GAUSSIAN_D_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define CGC_D_FN __device__ __forceinline__
#else
#define CGC_D_FN static inline
#endif

/* Pixels with q beyond this (3 sigma) get nothing; the footprint, lanes and weight were
   measured (docs/tuning.md, "native/render_tile.h: footprint, lanes and exp"). */
#define CGC_CUTOFF_Q 9.0
/* Gaussians thinner than this (in pixels) draw nothing rather than being divided by. */
#define CGC_MIN_CHOLESKY 1e-12
#define CGC_LN2 0.69314718055994530942
#define CGC_HALF_LOG2E 0.72134752044448170368

typedef union { double f; long long i; } cgc_bits_d;

/* Pixel box (inclusive) of the ellipse q <= CGC_CUTOFF_Q, clipped to the image:
   |dx| <= 3 sqrt(Sxx), |dy| <= 3 sqrt(Syy), tighter than a square of 3 sqrt(lambda_max) and
   still exact.  In double whatever the parameters' precision.  Returns 0, leaving the box
   unset, when the Gaussian is degenerate or its box misses the image. */
CGC_D_FN int cgc_gaussian_box(double x, double y, double l11, double l21, double l22,
                              int width, int height, int *j0, int *j1, int *i0, int *i1) {
    double half_w, half_h;
    if (!(fabs(l11) > CGC_MIN_CHOLESKY && fabs(l22) > CGC_MIN_CHOLESKY))
        return 0;
    half_w = sqrt(CGC_CUTOFF_Q * l11 * l11);
    half_h = sqrt(CGC_CUTOFF_Q * (l21 * l21 + l22 * l22));
    if (!(half_w < 1e9 && half_h < 1e9 && fabs(x) < 1e9 && fabs(y) < 1e9))
        return 0;
    /* Centre of column j is j + 0.5: it lies in [x - half_w, x + half_w] when
       ceil(x - half_w - 0.5) <= j <= floor(x + half_w - 0.5). */
    *j0 = (int)ceil(x - half_w - 0.5);
    *j1 = (int)floor(x + half_w - 0.5);
    *i0 = (int)ceil(y - half_h - 0.5);
    *i1 = (int)floor(y + half_h - 0.5);
    if (*j0 < 0) *j0 = 0;
    if (*i0 < 0) *i0 = 0;
    if (*j1 > width - 1) *j1 = width - 1;
    if (*i1 > height - 1) *i1 = height - 1;
    return *j0 <= *j1 && *i0 <= *i1;
}

/* value where mask is all ones, +0 where it is 0 (mask = -(condition)). */
CGC_D_FN double cgc_keep_d(double value, long long mask) {
    cgc_bits_d v;
    v.f = value;
    v.i &= mask;
    return v.f;
}

/* min(|q|, CGC_CUTOFF_Q), CGC_CUTOFF_Q for inf and NaN of either sign, compared as
   integers: the bits of non-negative doubles order as the values do.  So the weight below
   always gets an argument in [0, CGC_CUTOFF_Q], even for masked lanes. */
CGC_D_FN double cgc_clamp_q_d(double q) {
    cgc_bits_d v, c;
    v.f = q;
    v.i &= 0x7fffffffffffffffLL;
    c.f = CGC_CUTOFF_Q;
    v.i = v.i < c.i ? v.i : c.i;
    return v.f;
}

/* 2^-n for 0 <= n <= 1022, built from its exponent bits. */
CGC_D_FN double cgc_pow2_neg_d(int n) {
    cgc_bits_d v;
    v.i = (long long)(1023 - n) << 52;
    return v.f;
}

/* exp(-q / 2) for q in [0, CGC_CUTOFF_Q] (the loops clamp q, and mask the weight where
   q > CGC_CUTOFF_Q).  exp(-q / 2) = 2^-t with t = q log2(e) / 2 in [0, 6.5]: with n = t
   rounded and f = n - t in [-1/2, 1/2], it is 2^f times 2^-n.  2^f is the Taylor series
   of exp(f ln 2), truncated where the next term falls below double's rounding
   (|f ln 2| <= 0.35: degree 12, 2e-16 relative): within a few ulps of exp. */
CGC_D_FN double cgc_weight_d(double q) {
    double t = q * CGC_HALF_LOG2E;
    int n = (int)(t + 0.5);
    double f = ((double)n - t) * CGC_LN2;
    double p = 1.0 / 479001600.0;
    p = p * f + 1.0 / 39916800.0;
    p = p * f + 1.0 / 3628800.0;
    p = p * f + 1.0 / 362880.0;
    p = p * f + 1.0 / 40320.0;
    p = p * f + 1.0 / 5040.0;
    p = p * f + 1.0 / 720.0;
    p = p * f + 1.0 / 120.0;
    p = p * f + 1.0 / 24.0;
    p = p * f + 1.0 / 6.0;
    p = p * f + 0.5;
    p = p * f + 1.0;
    p = p * f + 1.0;
    return p * cgc_pow2_neg_d(n);
}

/* exp(-q / 2) of pixel (row i, column j) for a Gaussian centred at (x, y) with Cholesky
   factor [[1 / inv_l11, 0], [l21, 1 / inv_l22]], or 0 where q > CGC_CUTOFF_Q. */
CGC_D_FN double cgc_refine_weight(double x, double y, double inv_l11, double l21,
                                  double inv_l22, int i, int j) {
    double u = ((double)j + 0.5 - x) * inv_l11;
    double v = (((double)i + 0.5 - y) - l21 * u) * inv_l22;
    double q = u * u + v * v;
    return cgc_keep_d(cgc_weight_d(cgc_clamp_q_d(q)), -(long long)(q <= CGC_CUTOFF_Q));
}

#endif
