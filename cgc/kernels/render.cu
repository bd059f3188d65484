// Tiled renderer on the GPU: binning, render_forward, render_backward, reduce_pair_gradients.
// Mirrors the CPU renderer, cgc/native/render_tile.h (read its "read me first" note), with
// float32 arithmetic and 16-pixel tiles; the per-Gaussian and per-pixel maths live in
// common.cuh.  Binning produces the same lists as the reference: Python sorts the keys
// tile * n + gaussian written by expand_pairs, which orders pairs by tile and, within a
// tile, by increasing Gaussian index.

// Launch configuration, set by cgc/backends/cuda.py:
//   * prepare_gaussians, expand_pairs, reduce_pair_gradients: one thread per Gaussian,
//     1-D blocks.
//   * tile_ranges: one thread per (tile, Gaussian) pair, 1-D blocks.
//   * render_forward, render_backward: grid (tiles_x, tiles_y), block (TILE, TILE); every
//     thread of a block must reach the barriers, so threads outside the image stay in the
//     loop and only skip their writes.

// Gradients are deterministic: like the reference, render_backward writes one row per
// (tile, Gaussian) pair and reduce_pair_gradients sums each Gaussian's rows in tile order.
// Every sum has a fixed order and there are no atomics, so a run repeats bit for bit.

#include "common.cuh"

// Tile rectangle [tx0, tx1] x [ty0, ty1] (inclusive) of Gaussian g's box: the tiles binning
// pairs it with.  A Gaussian that draws nothing gets the empty rectangle 0, -1, 0, -1.
// Out: rect[0..3] as tx0, tx1, ty0, ty1.
__device__ __forceinline__ void gaussian_tiles(const float* __restrict__ params, int g,
                                               int height, int width, int rect[4]) {
    const float* row = params + (long long)g * 8;
    cgc::Box box;
    if (cgc::gaussian_box(row[0], row[1], row[2], row[3], row[4], width, height, &box)) {
        rect[0] = box.j0 / cgc::TILE;
        rect[1] = box.j1 / cgc::TILE;
        rect[2] = box.i0 / cgc::TILE;
        rect[3] = box.i1 / cgc::TILE;
    } else {
        rect[0] = 0;
        rect[1] = -1;
        rect[2] = 0;
        rect[3] = -1;
    }
}

// Tile rectangle (gaussian_tiles) of each Gaussian and its number of tiles.
// Out: tile_rect (n, 4) int32 as tx0, tx1, ty0, ty1; tile_count (n,) int32.
extern "C" __global__ void prepare_gaussians(const float* __restrict__ params, int n,
                                             int height, int width,
                                             int* __restrict__ tile_rect,
                                             int* __restrict__ tile_count) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) {
        return;
    }
    int* rect = tile_rect + (long long)g * 4;
    gaussian_tiles(params, g, height, width, rect);
    tile_count[g] = (rect[1] - rect[0] + 1) * (rect[3] - rect[2] + 1);
}

// Write the sort key tile * n + g of every (tile, Gaussian) pair.
// In:  tile_rect from prepare_gaussians; pair_end (n,) int64, the inclusive prefix sum of
//      tile_count, so Gaussian g owns keys[pair_end[g] - tile_count[g], pair_end[g]).
// Out: keys (pair_end[n - 1],) int64, each Gaussian's keys in row-major tile order.
extern "C" __global__ void expand_pairs(const int* __restrict__ tile_rect,
                                        const long long* __restrict__ pair_end, int n,
                                        int tiles_x, long long* __restrict__ keys) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) {
        return;
    }
    const int* rect = tile_rect + (long long)g * 4;
    long long p = g > 0 ? pair_end[g - 1] : 0;
    for (int ty = rect[2]; ty <= rect[3]; ++ty) {
        for (int tx = rect[0]; tx <= rect[1]; ++tx) {
            keys[p++] = (long long)(ty * tiles_x + tx) * n + g;
        }
    }
}

// Split sorted keys into the reference's binning arrays.
// In:  keys (n_pairs,) sorted ascending, n_pairs >= 1.
// Out: pair_gaussian (n_pairs,) int32; tile_start (n_tiles + 1,) int64 where the pairs of tile
//      t are [tile_start[t], tile_start[t + 1]).  Every entry is written: pair p writes the
//      starts of the tiles after the previous pair's tile up to its own, and the last pair
//      also closes all remaining tiles.
extern "C" __global__ void tile_ranges(const long long* __restrict__ keys, long long n_pairs,
                                       int n, int n_tiles, long long* __restrict__ tile_start,
                                       int* __restrict__ pair_gaussian) {
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) {
        return;
    }
    const long long tile = keys[p] / n;
    pair_gaussian[p] = (int)(keys[p] - tile * n);
    const long long prev = p > 0 ? keys[p - 1] / n : -1;
    for (long long t = prev + 1; t <= tile; ++t) {
        tile_start[t] = p;
    }
    if (p == n_pairs - 1) {
        for (long long t = tile + 1; t <= n_tiles; ++t) {
            tile_start[t] = n_pairs;
        }
    }
}

// Sum each of the 8 values over the 32 lanes of the warp; lane l returns the sum of
// value[l / 4].  Each step halves the values a lane carries while it halves the lanes that
// share a partial sum, so 4 + 2 + 1 + 1 + 1 = 9 shuffles do the work of 8 * 5 = 40
// (and 8 lanes, not one, then store the results).  All 32 lanes must call it.
__device__ __forceinline__ float warp_sum_8(const float value[8], int lane) {
    // Lanes with bit 16 set keep values 4..7, the others 0..3, adding the partner's copy.
    const bool hi16 = (lane & 16) != 0;
    float a[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const float send = hi16 ? value[k] : value[k + 4];
        a[k] = (hi16 ? value[k + 4] : value[k]) + __shfl_xor_sync(cgc::FULL_WARP, send, 16);
    }
    const bool hi8 = (lane & 8) != 0;
    float b[2];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
        const float send = hi8 ? a[k] : a[k + 2];
        b[k] = (hi8 ? a[k + 2] : a[k]) + __shfl_xor_sync(cgc::FULL_WARP, send, 8);
    }
    const bool hi4 = (lane & 4) != 0;
    float c = (hi4 ? b[1] : b[0]) + __shfl_xor_sync(cgc::FULL_WARP, hi4 ? b[0] : b[1], 4);
    c += __shfl_xor_sync(cgc::FULL_WARP, c, 2);
    c += __shfl_xor_sync(cgc::FULL_WARP, c, 1);
    return c;
}

// out (height, width, 3) = sum over Gaussians of colour * exp(-q / 2), overwritten entirely
// (empty tiles and all); with want_weight != 0, weight (height, width) receives
// sum exp(-q / 2).  Gaussians are staged BATCH at a time through shared memory, and every
// batch of the tile's list is drawn, however long the list.
extern "C" __global__ void render_forward(const float* __restrict__ params, int height,
                                          int width, const long long* __restrict__ tile_start,
                                          const int* __restrict__ pair_gaussian,
                                          float* __restrict__ out, float* __restrict__ weight,
                                          int want_weight) {
    __shared__ cgc::Staged staged[cgc::BATCH];
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    const int rank = threadIdx.y * cgc::TILE + threadIdx.x;
    const int i = blockIdx.y * cgc::TILE + threadIdx.y;
    const int j = blockIdx.x * cgc::TILE + threadIdx.x;
    const long long begin = tile_start[tile], end = tile_start[tile + 1];
    float acc_r = 0.0f, acc_g = 0.0f, acc_b = 0.0f, acc_w = 0.0f;
    for (long long batch = begin; batch < end; batch += cgc::BATCH) {
        if (batch + rank < end) {
            staged[rank] = cgc::stage_gaussian(params, pair_gaussian[batch + rank], height, width);
        }
        __syncthreads();
        const int count = end - batch < cgc::BATCH ? (int)(end - batch) : cgc::BATCH;
        for (int k = 0; k < count; ++k) {
            const cgc::Staged& s = staged[k];
            float u, v, q;
            if (cgc::pixel_q(s, i, j, &u, &v, &q) && q <= cgc::CUTOFF_Q) {
                const float w = cgc::gaussian_weight(q);
                acc_r += s.r * w;
                acc_g += s.g * w;
                acc_b += s.b * w;
                acc_w += w;
            }
        }
        // The next batch overwrites staged[] that slower threads may still be reading.
        __syncthreads();
    }
    if (i < height && j < width) {
        const long long pixel = (long long)i * width + j;
        out[pixel * 3 + 0] = acc_r;
        out[pixel * 3 + 1] = acc_g;
        out[pixel * 3 + 2] = acc_b;
        if (want_weight) {
            weight[pixel] = acc_w;
        }
    }
}

// Gaussians of a batch whose warp partials are reduced together: one thread of the block
// per (Gaussian, parameter), so the reduction is one add chain per thread and the pair rows
// are stored with one coalesced write of the whole block.
constexpr int CHUNK = cgc::BATCH / 8;
constexpr int WARPS = cgc::BATCH / 32;

// pair_grad (n_pairs, 8): row p receives the sum over tile t's pixels of dL/dparams of pair
// p's Gaussian, given grad_image = dL/dout (height, width, 3), for every pair p of every
// tile t; rows of Gaussians that miss all of the tile's pixels are zeros.  Every row is
// written exactly once, so the caller need not clear the buffer.
// Order of the sums, the same on every run: each warp sums its 32 pixels with shuffles
// (warp_sum_8) into partial[warp]; after every CHUNK Gaussians one thread per
// (Gaussian, parameter) adds the WARPS partials in warp order and stores the row.
extern "C" __global__ void render_backward(const float* __restrict__ params, int height,
                                           int width, const long long* __restrict__ tile_start,
                                           const int* __restrict__ pair_gaussian,
                                           const float* __restrict__ grad_image,
                                           float* __restrict__ pair_grad) {
    __shared__ cgc::Staged staged[cgc::BATCH];
    // [warp][Gaussian of the chunk][parameter]: the reducing threads of one warp read 32
    // consecutive floats for each warp, free of bank conflicts.
    __shared__ float partial[WARPS][CHUNK][8];
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    const int rank = threadIdx.y * cgc::TILE + threadIdx.x;
    const int lane = rank % 32;
    const int warp = rank / 32;
    const int i = blockIdx.y * cgc::TILE + threadIdx.y;
    const int j = blockIdx.x * cgc::TILE + threadIdx.x;
    const long long begin = tile_start[tile], end = tile_start[tile + 1];
    float gr = 0.0f, gg = 0.0f, gb = 0.0f;
    if (i < height && j < width) {
        const long long pixel = (long long)i * width + j;
        gr = grad_image[pixel * 3 + 0];
        gg = grad_image[pixel * 3 + 1];
        gb = grad_image[pixel * 3 + 2];
    }
    for (long long batch = begin; batch < end; batch += cgc::BATCH) {
        if (batch + rank < end) {
            staged[rank] = cgc::stage_gaussian(params, pair_gaussian[batch + rank], height, width);
        }
        __syncthreads();
        const int count = end - batch < cgc::BATCH ? (int)(end - batch) : cgc::BATCH;
        for (int chunk = 0; chunk < count; chunk += CHUNK) {
            const int in_chunk = count - chunk < CHUNK ? count - chunk : CHUNK;
            for (int k = 0; k < in_chunk; ++k) {
                const cgc::Staged& s = staged[chunk + k];
                float u, v, q;
                const bool hit = cgc::pixel_q(s, i, j, &u, &v, &q) && q <= cgc::CUTOFF_Q;
                // Uniform across the warp, so the shuffles below see all 32 lanes.
                if (__ballot_sync(cgc::FULL_WARP, hit) == 0u) {
                    if (lane < 8) {
                        partial[warp][k][lane] = 0.0f;
                    }
                    continue;
                }
                float grad[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                if (hit) {
                    cgc::pixel_param_grad(s, u, v, cgc::gaussian_weight(q), gr, gg, gb, grad);
                }
                const float sum = warp_sum_8(grad, lane);
                if (lane % 4 == 0) {
                    partial[warp][k][lane / 4] = sum;
                }
            }
            __syncthreads();
            const int k = rank / 8, param = rank % 8;
            if (k < in_chunk) {
                float total = partial[0][k][param];
#pragma unroll
                for (int w = 1; w < WARPS; ++w) {
                    total += partial[w][k][param];
                }
                pair_grad[(batch + chunk + k) * 8 + param] = total;
            }
            // The next chunk overwrites partial[], and the next batch staged[], that slower
            // threads may still be reading.
            __syncthreads();
        }
    }
}

// grad_params (n, 8) = dL/dparams: row g is the sum of pair_grad's rows of Gaussian g, added
// in increasing tile order as the reference does, so the result does not depend on how the
// threads are scheduled.  Every row is written, zeros for Gaussians in no tile.
// The pairs of g are those of the tiles in its rectangle (gaussian_tiles, as binning made
// them); each tile's list is sorted by Gaussian index, so g's pair is found by bisection.
// This needs no sorted copy of the pairs and no state beyond the bins.  A tile without g
// (bins from a box that rounded differently) is skipped: render_backward gives g nothing
// outside its own box anyway.
extern "C" __global__ void reduce_pair_gradients(const float* __restrict__ params, int n,
                                                 int height, int width,
                                                 const long long* __restrict__ tile_start,
                                                 const int* __restrict__ pair_gaussian,
                                                 const float* __restrict__ pair_grad,
                                                 float* __restrict__ grad_params) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) {
        return;
    }
    int rect[4];
    gaussian_tiles(params, g, height, width, rect);
    const int tiles_x = (width + cgc::TILE - 1) / cgc::TILE;
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int ty = rect[2]; ty <= rect[3]; ++ty) {
        for (int tx = rect[0]; tx <= rect[1]; ++tx) {
            const int tile = ty * tiles_x + tx;
            // First pair of the tile whose Gaussian index is >= g.
            long long lo = tile_start[tile], hi = tile_start[tile + 1];
            const long long stop = hi;
            while (lo < hi) {
                const long long mid = lo + (hi - lo) / 2;
                if (pair_gaussian[mid] < g) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < stop && pair_gaussian[lo] == g) {
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    acc[k] += pair_grad[lo * 8 + k];
                }
            }
        }
    }
    float* row = grad_params + (long long)g * 8;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        row[k] = acc[k];
    }
}
