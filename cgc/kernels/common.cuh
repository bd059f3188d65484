// Per-Gaussian and per-pixel maths shared by every kernel, written once.  The CPU reference
// is cgc/native/render_tile.h (binned by cgc/_core.pyx) and cgc/_core.pyx; read their "read
// me first" notes.  Conventions repeated here because the kernels depend on them:
//   * params is the packed (N, 8) float32 array x, y, l11, l21, l22, r, g, b, in pixels.
//   * Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
//   * u = dx / l11, v = (dy - l21 u) / l22, q = u^2 + v^2; a Gaussian adds colour * exp(-q/2)
//     to a pixel exactly when the pixel lies in the Gaussian's box and q <= CUTOFF_Q.

// The box and q are evaluated with the same operation order as the reference.  The
// __f*_rn intrinsics forbid the compiler from fusing a multiply and an add into an FMA, so
// the GPU and the CPU emulation of these kernels round each step identically and agree on
// every q <= CUTOFF_Q decision.  The Cython reference evaluates float32 inputs in float32
// with the same single-rounding steps, so it agrees with both on those decisions too.

// This file must compile under NVRTC, which has no host headers: include nothing.

#ifndef CGC_KERNELS_COMMON_CUH
#define CGC_KERNELS_COMMON_CUH

namespace cgc {

// Tile side in pixels (docs/tuning.md, "kernels/common.cuh: GPU tile and exp").
constexpr int TILE = 16;
// Gaussians staged in shared memory per batch: one per thread of a TILE x TILE block.
constexpr int BATCH = TILE * TILE;
constexpr float CUTOFF_Q = 9.0f;
// Gaussians thinner than this (in pixels) are skipped rather than divided by.
constexpr float MIN_CHOLESKY = 1e-12f;
constexpr unsigned FULL_WARP = 0xffffffffu;

// Inclusive pixel box [j0, j1] x [i0, i1] of one Gaussian, clipped to the image.
struct Box {
    int j0, j1, i0, i1;
};

// Pixel box of the ellipse q <= CUTOFF_Q: |dx| <= 3 sqrt(l11^2), |dy| <= 3 sqrt(l21^2 + l22^2).
// In:  one Gaussian's position and Cholesky factor, the image size.
// Out: *box, valid only when the function returns true.
// Returns false for degenerate (|l11| or |l22| <= MIN_CHOLESKY, NaN, huge) Gaussians and for
// boxes that miss the image; such Gaussians draw nothing.
__device__ __forceinline__ bool gaussian_box(float x, float y, float l11, float l21, float l22,
                                             int width, int height, Box* box) {
    if (!(fabsf(l11) > MIN_CHOLESKY && fabsf(l22) > MIN_CHOLESKY)) {
        return false;
    }
    const float half_w = sqrtf(__fmul_rn(__fmul_rn(CUTOFF_Q, l11), l11));
    const float half_h =
        sqrtf(__fmul_rn(CUTOFF_Q, __fadd_rn(__fmul_rn(l21, l21), __fmul_rn(l22, l22))));
    // Also keeps the float -> int conversions below in range.
    if (!(half_w < 1e9f && half_h < 1e9f && fabsf(x) < 1e9f && fabsf(y) < 1e9f)) {
        return false;
    }
    // Centre of column j is j + 0.5: it lies in [x - half_w, x + half_w] when
    // ceil(x - half_w - 0.5) <= j <= floor(x + half_w - 0.5).
    int j0 = (int)ceilf(x - half_w - 0.5f);
    int j1 = (int)floorf(x + half_w - 0.5f);
    int i0 = (int)ceilf(y - half_h - 0.5f);
    int i1 = (int)floorf(y + half_h - 0.5f);
    if (j0 < 0) j0 = 0;
    if (i0 < 0) i0 = 0;
    if (j1 > width - 1) j1 = width - 1;
    if (i1 > height - 1) i1 = height - 1;
    box->j0 = j0;
    box->j1 = j1;
    box->i0 = i0;
    box->i1 = i1;
    return j0 <= j1 && i0 <= i1;
}

// A Gaussian as the per-pixel loops read it: reciprocals precomputed once per Gaussian.
// A Gaussian that draws nothing gets an empty box (j0 > j1), so no pixel ever matches it.
struct Staged {
    float x, y, inv_l11, l21, inv_l22, r, g, b;
    Box box;
};

// In:  row g of params, the image size.  Out: the staged Gaussian.
__device__ __forceinline__ Staged stage_gaussian(const float* __restrict__ params, int g,
                                                 int height, int width) {
    const float* row = params + (long long)g * 8;
    Staged s;
    s.x = row[0];
    s.y = row[1];
    s.inv_l11 = 1.0f / row[2];
    s.l21 = row[3];
    s.inv_l22 = 1.0f / row[4];
    s.r = row[5];
    s.g = row[6];
    s.b = row[7];
    if (!gaussian_box(s.x, s.y, row[2], s.l21, row[4], width, height, &s.box)) {
        s.box.j0 = 1;
        s.box.j1 = 0;
        s.box.i0 = 1;
        s.box.i1 = 0;
    }
    return s;
}

// Offsets of pixel (i, j)'s centre from a staged Gaussian, in the reference's order, and
// whether the pixel lies in its box.  q is only meaningful when the function returns true.
// Out: *u, *v, *q with q = u^2 + v^2.
__device__ __forceinline__ bool pixel_q(const Staged& s, int i, int j, float* u, float* v,
                                        float* q) {
    if (!(i >= s.box.i0 && i <= s.box.i1 && j >= s.box.j0 && j <= s.box.j1)) {
        return false;
    }
    const float dy = __fsub_rn((float)i + 0.5f, s.y);
    const float uu = __fmul_rn(__fsub_rn((float)j + 0.5f, s.x), s.inv_l11);
    const float vv = __fmul_rn(__fsub_rn(dy, __fmul_rn(s.l21, uu)), s.inv_l22);
    *u = uu;
    *v = vv;
    *q = __fadd_rn(__fmul_rn(uu, uu), __fmul_rn(vv, vv));
    return true;
}

// Weight exp(-q / 2) of a pixel with q <= CUTOFF_Q.  The hardware exponential is within a
// few ulps, far below the renderer's tolerance against the float64 reference, and several
// times faster than the IEEE-accurate expf.
__device__ __forceinline__ float gaussian_weight(float q) { return __expf(-0.5f * q); }

// Gradient of one pixel's loss with respect to the 8 parameters of one Gaussian that covers
// it with weight w = exp(-q / 2), given dL/dpixel (gr, gg, gb).
// Out: grad[0..7] in params' column order.
__device__ __forceinline__ void pixel_param_grad(const Staged& s, float u, float v, float w,
                                                 float gr, float gg, float gb, float grad[8]) {
    // s_q = dL/dq = -(w / 2) <dL/dpixel, colour>
    const float s_q = -0.5f * w * (gr * s.r + gg * s.g + gb * s.b);
    // dq/du through u directly and through v = (dy - l21 u) / l22
    const float d_u = 2.0f * s_q * (u - v * s.l21 * s.inv_l22);
    const float d_v = 2.0f * s_q * v * s.inv_l22;
    grad[0] = -d_u * s.inv_l11;
    grad[1] = -d_v;
    grad[2] = -d_u * u * s.inv_l11;
    grad[3] = -d_v * u;
    grad[4] = -d_v * v;
    grad[5] = gr * w;
    grad[6] = gg * w;
    grad[7] = gb * w;
}

// Clamp both eigenvalues of L L^T, L = [[row[2], 0], [row[3], row[4]]], into
// [min_var, max_var], operation for operation as _clamp_cholesky in cgc/_core.pyx.
// Invariant: a covariance already inside the bounds is left bit-for-bit untouched; a clamped
// one is written back as its Cholesky factor with l11 > 0, l22 > 0.
// Evaluated in double like the reference, so both clamp the same rows; the cost is
// irrelevant in a kernel bound by memory traffic.
__device__ __forceinline__ void clamp_cholesky(float* row, double min_var, double max_var) {
    const double l11 = row[2], l21 = row[3], l22 = row[4];
    const double a = l11 * l11, b = l11 * l21, c = l21 * l21 + l22 * l22;
    const double half_diff = 0.5 * (a - c), mean = 0.5 * (a + c);
    const double spread = sqrt(half_diff * half_diff + b * b);
    double big = mean + spread, small = mean - spread;
    if (small >= min_var && big <= max_var) {
        return;
    }
    // Unit eigenvector (ex, ey) of the larger eigenvalue; pick the better-conditioned of the
    // two equivalent expressions.  A round covariance has every direction as eigenvector.
    double ex, ey;
    if (half_diff >= 0.0) {
        ex = big - c;
        ey = b;
    } else {
        ex = b;
        ey = big - a;
    }
    const double norm = sqrt(ex * ex + ey * ey);
    if (norm > 0.0) {
        ex = ex / norm;
        ey = ey / norm;
    } else {
        ex = 1.0;
        ey = 0.0;
    }
    // Written as comparisons, not fmin/fmax, so that NaN propagates as in the reference.
    big = min_var > big ? min_var : big;
    big = max_var < big ? max_var : big;
    small = min_var > small ? min_var : small;
    small = max_var < small ? max_var : small;
    const double ex2 = ex * ex, ey2 = ey * ey;
    const double new_a = big * ex2 + small * ey2;
    const double new_b = (big - small) * ex * ey;
    const double new_l11 = sqrt(new_a);
    row[2] = (float)new_l11;
    row[3] = (float)(new_b / new_l11);
    row[4] = (float)sqrt(big * small / new_a);
}

// value clamped into [lo, hi], as _clamp_centre in cgc/_core.pyx: the fit keeps centres inside
// the image, which a Gaussian that drifted out has no gradient to come back to.  Comparisons,
// not fminf/fmaxf, so that NaN passes through to the fit's finiteness check.
__device__ __forceinline__ float clamp_centre(float value, double lo, double hi) {
    if (value < lo) {
        return (float)lo;
    }
    if (value > hi) {
        return (float)hi;
    }
    return value;
}

}  // namespace cgc

#endif  // CGC_KERNELS_COMMON_CUH
