// The refinement of quantised codes on the GPU: the coordinate descent of
// cgc/image/_refine_cy.pyx (read its "read me first" note), one thread block per Gaussian of a
// round.  cgc/image/refine.py puts the Gaussians in rounds whose reaches do not meet
// (_refine_cy.refine_rounds), so the blocks of one launch never touch the same pixel, and a
// round gives what visiting its Gaussians one after another would; Gaussians whose reaches
// meet are in rounds in index order, so the rounds take the CPU's steps.
//
// Everything is float64, as in the reference: the render is three (H, W) planes of double,
// the target three planes of float.  Each step's operations are those of the reference in the
// same order; only the sums over a box run as a fixed tree over the block's threads rather
// than pixel by pixel, so a cost can differ from the CPU's in its last bits (and a near tie
// go the other way).  The module is compiled without FMA contraction (cgc.kernels
// MODULE_OPTIONS), as the CPU reference is.

#include "common.cuh"
#include "../native/gaussian_d.h"

namespace cgc {

// Threads per block of refine_round: a Gaussian's box at Kodak densities holds a few hundred
// pixels.
constexpr int REFINE_THREADS = 128;

// A Gaussian's box in double from its float parameters (cgc_gaussian_box).
__device__ __forceinline__ bool box_d(const float* g, int width, int height, Box* box) {
    return cgc_gaussian_box(g[0], g[1], g[2], g[3], g[4], width, height, &box->j0, &box->j1,
                            &box->i0, &box->i1);
}

// The weight of pixel (i, j), 0 past q = CGC_CUTOFF_Q (cgc_refine_weight).
__device__ __forceinline__ double pixel_weight(const float* g, int i, int j) {
    return cgc_refine_weight(g[0], g[1], 1.0 / (double)g[2], g[3], 1.0 / (double)g[4], i, j);
}

__device__ __forceinline__ double clip01(double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); }

__device__ __forceinline__ bool in_box(const Box& b, bool has, int i, int j) {
    return has && i >= b.i0 && i <= b.i1 && j >= b.j0 && j <= b.j1;
}

// Sums of `count` values per thread over the block, by a fixed tree: the result is in
// sums[k][0] for every thread after the call.
__device__ __forceinline__ void block_sums(double (*sums)[REFINE_THREADS], const double* mine,
                                           int count) {
    const int t = threadIdx.x;
    for (int k = 0; k < count; ++k) sums[k][t] = mine[k];
    __syncthreads();
    for (int half = REFINE_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            for (int k = 0; k < count; ++k) sums[k][t] += sums[k][t + half];
        }
        __syncthreads();
    }
}

// YCoCg codes to the decoder's float32 RGB (cgc.image.quantize.ycocg_to_rgb).
__device__ __forceinline__ void colour_of(const float* values, int stride, unsigned c0,
                                          unsigned c1, unsigned c2, float* rgb) {
    const float yy = values[5 * stride + c0], co = values[6 * stride + c1],
                cg = values[7 * stride + c2];
    rgb[0] = (yy + co) - cg;
    rgb[1] = yy + cg;
    rgb[2] = (yy - co) - cg;
}

}  // namespace cgc

using namespace cgc;

// One round of the descent: block b visits Gaussian order[b] (its colour, then x, y, l11,
// l21 and l22 one code either way), updating params, codes and the render in place.
// In:  values (8, stride) float32, each attribute's decoded value per code (colour columns
//      in YCoCg); levels, lo, step per attribute; target (3, H, W) float32.
// In/out: params (N, 8) float32, codes (N, 8) uint32, render (3, H, W) float64.
extern "C" __global__ void __launch_bounds__(REFINE_THREADS, 1)
refine_round(float* __restrict__ params, unsigned* __restrict__ codes,
             const float* __restrict__ values, int stride, const long long* __restrict__ levels,
             const double* __restrict__ lo, const double* __restrict__ step,
             double* __restrict__ render, const float* __restrict__ target,
             const int* __restrict__ order, int height, int width) {
    __shared__ double sums[8][REFINE_THREADS];
    __shared__ float g[8];
    __shared__ unsigned code[8];
    // Candidates, read by every thread: colour shifts, and the two geometry moves.
    __shared__ double shift[8][3];
    __shared__ float trial[2][8];
    const int t = threadIdx.x;
    const long long row = (long long)order[blockIdx.x] * 8;
    const long long plane = (long long)height * width;
    if (t < 8) {
        g[t] = params[row + t];
        code[t] = codes[row + t];
    }
    __syncthreads();
    Box box;
    const bool has = box_d(g, width, height, &box);
    const int box_w = has ? box.j1 - box.j0 + 1 : 0;
    const int pixels = has ? box_w * (box.i1 - box.i0 + 1) : 0;

    // Colour: the least-squares colour over the box, then the best of the 2 x 2 x 2 codes
    // around it, or none.
    double mine[8];
    for (int k = 0; k < 4; ++k) mine[k] = 0.0;
    for (int p = t; p < pixels; p += REFINE_THREADS) {
        const int i = box.i0 + p / box_w, j = box.j0 + p % box_w;
        const double w = pixel_weight(g, i, j);
        if (w == 0.0) continue;
        mine[3] += w * w;
        for (int ch = 0; ch < 3; ++ch) {
            const double s = render[ch * plane + (long long)i * width + j];
            if (0.0 <= s && s <= 1.0)
                mine[ch] += (s - (double)target[ch * plane + (long long)i * width + j]) * w;
        }
    }
    block_sums(sums, mine, 4);
    const double norm = sums[3][0];
    double grad[3] = {sums[0][0], sums[1][0], sums[2][0]};
    __syncthreads();
    if (has && norm > 0.0) {
        double target_rgb[3], ycocg[3];
        unsigned low[3], high[3];
        for (int ch = 0; ch < 3; ++ch) target_rgb[ch] = g[5 + ch] - grad[ch] / norm;
        ycocg[0] = 0.25 * target_rgb[0] + 0.5 * target_rgb[1] + 0.25 * target_rgb[2];
        ycocg[1] = 0.5 * target_rgb[0] - 0.5 * target_rgb[2];
        ycocg[2] = -0.25 * target_rgb[0] + 0.5 * target_rgb[1] - 0.25 * target_rgb[2];
        for (int k = 0; k < 3; ++k) {
            double cell = step[5 + k] > 0.0 ? (ycocg[k] - lo[5 + k]) / step[5 + k] : 0.0;
            if (!(cell >= 0.0)) cell = 0.0;
            if (cell > (double)levels[5 + k]) cell = (double)levels[5 + k];
            const long long c = (long long)floor(cell);
            low[k] = (unsigned)c;
            high[k] = (unsigned)(c < levels[5 + k] ? c + 1 : c);
        }
        if (t < 8) {
            float rgb[3];
            colour_of(values, stride, (t & 1) ? high[0] : low[0], (t & 2) ? high[1] : low[1],
                      (t & 4) ? high[2] : low[2], rgb);
            for (int ch = 0; ch < 3; ++ch) shift[t][ch] = (double)(rgb[ch] - g[5 + ch]);
        }
        for (int combo = 0; combo < 8; ++combo) mine[combo] = 0.0;
        __syncthreads();
        for (int p = t; p < pixels; p += REFINE_THREADS) {
            const int i = box.i0 + p / box_w, j = box.j0 + p % box_w;
            const double w = pixel_weight(g, i, j);
            if (w == 0.0) continue;
            for (int ch = 0; ch < 3; ++ch) {
                const long long at = ch * plane + (long long)i * width + j;
                const double s = render[at], tv = (double)target[at];
                const double held = clip01(s) - tv, base = held * held;
                for (int combo = 0; combo < 8; ++combo) {
                    const double moved = clip01(s + shift[combo][ch] * w) - tv;
                    mine[combo] += moved * moved - base;
                }
            }
        }
        block_sums(sums, mine, 8);
        double best_cost = 0.0;
        int best = -1;
        for (int combo = 0; combo < 8; ++combo) {
            if (sums[combo][0] < best_cost) {
                best_cost = sums[combo][0];
                best = combo;
            }
        }
        __syncthreads();
        if (best >= 0) {
            const unsigned chosen[3] = {(best & 1) ? high[0] : low[0],
                                        (best & 2) ? high[1] : low[1],
                                        (best & 4) ? high[2] : low[2]};
            float rgb[3];
            colour_of(values, stride, chosen[0], chosen[1], chosen[2], rgb);
            // Old colour out, new colour in, as the reference's two splats.
            for (int p = t; p < pixels; p += REFINE_THREADS) {
                const int i = box.i0 + p / box_w, j = box.j0 + p % box_w;
                const double w = pixel_weight(g, i, j);
                if (w == 0.0) continue;
                for (int ch = 0; ch < 3; ++ch) {
                    double& r = render[ch * plane + (long long)i * width + j];
                    r += -1.0 * (double)g[5 + ch] * w;
                    r += 1.0 * (double)rgb[ch] * w;
                }
            }
            __syncthreads();
            if (t == 0) {
                for (int k = 0; k < 3; ++k) {
                    code[5 + k] = chosen[k];
                    g[5 + k] = rgb[k];
                }
            }
            __syncthreads();
        }
    }

    // Geometry: each of x, y, l11, l21, l22 one code down or up where that lowers the error.
    for (int k = 0; k < 5; ++k) {
        bool valid[2], has_new[2] = {false, false};
        Box old_box, new_box[2], span;
        const bool has_old = box_d(g, width, height, &old_box);
        bool any = has_old;
        span = old_box;
        if (t < 16) {
            const int d = t / 8, m = t % 8;
            const long long candidate = (long long)code[k] + (d ? 1 : -1);
            trial[d][m] = m == k && candidate >= 0 && candidate <= levels[k]
                ? values[k * stride + candidate] : g[m];
        }
        __syncthreads();
        for (int d = 0; d < 2; ++d) {
            const long long candidate = (long long)code[k] + (d ? 1 : -1);
            valid[d] = candidate >= 0 && candidate <= levels[k];
            if (!valid[d]) continue;
            has_new[d] = box_d(trial[d], width, height, &new_box[d]);
            if (has_new[d] && !any) {
                span = new_box[d];
                any = true;
            } else if (has_new[d]) {
                const Box& b = new_box[d];
                span.j0 = b.j0 < span.j0 ? b.j0 : span.j0;
                span.j1 = b.j1 > span.j1 ? b.j1 : span.j1;
                span.i0 = b.i0 < span.i0 ? b.i0 : span.i0;
                span.i1 = b.i1 > span.i1 ? b.i1 : span.i1;
            }
        }
        // The cost of both candidates in one pass over their boxes and the old one: a pixel
        // outside the three adds exactly 0 to either.
        mine[0] = mine[1] = 0.0;
        const int span_w = any ? span.j1 - span.j0 + 1 : 0;
        const int span_pixels = any ? span_w * (span.i1 - span.i0 + 1) : 0;
        for (int p = t; p < span_pixels; p += REFINE_THREADS) {
            const int i = span.i0 + p / span_w, j = span.j0 + p % span_w;
            const double w_old = in_box(old_box, has_old, i, j) ? pixel_weight(g, i, j) : 0.0;
            for (int d = 0; d < 2; ++d) {
                if (!valid[d]) continue;
                // The reference masks a candidate that draws nothing (degenerate, or off
                // the image).
                const double w_new = has_new[d] ? pixel_weight(trial[d], i, j) : 0.0;
                double cost = 0.0;
                for (int ch = 0; ch < 3; ++ch) {
                    const long long at = ch * plane + (long long)i * width + j;
                    const double s = render[at], tv = (double)target[at];
                    const double moved = clip01(s + ((double)trial[d][5 + ch] * w_new
                                                     - (double)g[5 + ch] * w_old)) - tv;
                    const double held = clip01(s) - tv;
                    cost += moved * moved - held * held;
                }
                mine[d] += cost;
            }
        }
        block_sums(sums, mine, 2);
        double best_cost = 0.0;
        int best = -1;
        for (int d = 0; d < 2; ++d) {
            if (valid[d] && sums[d][0] < best_cost) {
                best_cost = sums[d][0];
                best = d;
            }
        }
        __syncthreads();
        if (best < 0) continue;
        if (has_old) {
            const int ow = old_box.j1 - old_box.j0 + 1;
            const int op = ow * (old_box.i1 - old_box.i0 + 1);
            for (int p = t; p < op; p += REFINE_THREADS) {
                const int i = old_box.i0 + p / ow, j = old_box.j0 + p % ow;
                const double w = pixel_weight(g, i, j);
                if (w == 0.0) continue;
                for (int ch = 0; ch < 3; ++ch)
                    render[ch * plane + (long long)i * width + j] += -1.0 * (double)g[5 + ch] * w;
            }
        }
        __syncthreads();
        if (has_new[best]) {
            const Box& nb = new_box[best];
            const int nw = nb.j1 - nb.j0 + 1;
            const int np = nw * (nb.i1 - nb.i0 + 1);
            for (int p = t; p < np; p += REFINE_THREADS) {
                const int i = nb.i0 + p / nw, j = nb.j0 + p % nw;
                const double w = pixel_weight(trial[best], i, j);
                if (w == 0.0) continue;
                for (int ch = 0; ch < 3; ++ch)
                    render[ch * plane + (long long)i * width + j] +=
                        1.0 * (double)trial[best][5 + ch] * w;
            }
        }
        __syncthreads();
        if (t == 0) {
            code[k] = (unsigned)((long long)code[k] + (best ? 1 : -1));
            g[k] = trial[best][k];
        }
        __syncthreads();
    }
    if (t < 8) {
        params[row + t] = g[t];
        codes[row + t] = code[t];
    }
}
