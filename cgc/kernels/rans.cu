// GPU decoder of cgc.lossless tiles: one warp (32 threads) per tile, several warps per block.
// Read me first: this note and the four after it.  docs/lossless-format.md is the
// specification; cgc/lossless/_lossless_cy.pyx holds the CPU decoder this kernel must match
// bit for bit.  Warp threadIdx.y of block b decodes tile b * blockDim.y + threadIdx.y; warps
// never share data, so every barrier is a __syncwarp and a warp past the last tile simply
// returns.

// Element e of a tile (row-major inside the tile, tile-local width w) belongs to lane e % 32
// and is decoded at step e / 32.  Lane j owns rANS state x_j, a uint32 kept in [2^23, 2^31)
// between symbols.  Elements are 1, 2 or 4 bytes and out is aligned to its element size, so
// each element is one load or store of its own width.  errors[tile * 32 + lane] is set
// non-zero where that lane saw a truncated or inconsistent stream; every read is bounded by
// the tile's own bytes.

// All coded symbols of a tile share one byte stream, consumed in the order (step, plane,
// lane).  After decoding its symbol every lane knows how many refill bytes it needs (0, 1 or
// 2: x >= 2^7 after any decode with at most 16 probability bits); an exclusive prefix sum of
// those counts over the lanes gives each lane its bytes, and the stream advances by the
// total.  The sum is two ballots ("needs >= 1", "needs 2") and popcounts of the lanes below.
// The encoder wrote the exact reverse order.

// The table of a symbol is plane_info[p].tbase + group * nctx + ctx_map[p][previous plane's
// byte of the same element]; for plane 0, ctx_map[0][activity of the row above]
// (activity() below); freq_start packs a symbol's start and frequency - 1 in one word.
// Group 255 means the plane is stored raw after the stream, plane after plane, each in
// element order.

// Phases of a warp, separated by barriers: residuals (written into out), then either the
// inverse predictor as a wavefront (lane j owns row j of each band of 32 rows, one column
// behind lane j - 1), which also undoes the integer transform, or, for a tile without
// predictor, the inverse transform alone.  A tile without predictor or activity contexts
// needs nothing of its neighbours, so its values are finished as they are decoded.

#include "../native/format.h"

__device__ __forceinline__ unsigned load_value(const unsigned char* out, long long index,
                                               int nbytes) {
    if (nbytes == 4) return reinterpret_cast<const unsigned*>(out)[index];
    if (nbytes == 2) return reinterpret_cast<const unsigned short*>(out)[index];
    return out[index];
}

__device__ __forceinline__ void store_value(unsigned char* out, long long index, int nbytes,
                                            unsigned v) {
    if (nbytes == 4) {
        reinterpret_cast<unsigned*>(out)[index] = v;
    } else if (nbytes == 2) {
        reinterpret_cast<unsigned short*>(out)[index] = (unsigned short)v;
    } else {
        out[index] = (unsigned char)v;
    }
}

// The inverse of the integer transform that made an element's bits codable: signed integers
// had their sign bit flipped, floats their sign bit rotated to the bottom.
__device__ __forceinline__ unsigned untransform(unsigned v, int kind, int bits,
                                                unsigned mask) {
    if (kind == CGC_KIND_SIGNED) return v ^ (1u << (bits - 1));
    if (kind == CGC_KIND_FLOAT) return ((v >> 1) | (v << (bits - 1))) & mask;
    return v;
}

// The integer transform itself (untransform's inverse).
__device__ __forceinline__ unsigned transform(unsigned v, int kind, int bits, unsigned mask) {
    if (kind == CGC_KIND_SIGNED) return v ^ (1u << (bits - 1));
    if (kind == CGC_KIND_FLOAT) return ((v << 1) | (v >> (bits - 1))) & mask;
    return v;
}

// Same rules as predict() in cgc/lossless/_lossless_cy.pyx, for element (y, x) of a tile whose
// transformed neighbours are a (left), b (top) and c (top-left); each is read only where
// it exists.
__device__ __forceinline__ unsigned predict(int pred, int y, int x, unsigned a, unsigned b,
                                            unsigned c, unsigned mask) {
    if (y == 0) return x > 0 ? a : 0u;
    if (x == 0) return b;
    if (pred == CGC_PRED_LEFT) return a;
    if (pred == CGC_PRED_TOP) return b;
    if (pred == CGC_PRED_AVG) return (a >> 1) + (b >> 1) + (a & b & 1u);
    if (pred == CGC_PRED_PLANAR) return (a + b - c) & mask;
    const unsigned lo = a < b ? a : b;
    const unsigned hi = a ^ b ^ lo;
    if (c >= hi) return lo;
    if (c <= lo) return hi;
    return (a + b - c) & mask;
}

// Plane-0 context input of element (y, x) of a tile w wide whose (0, 0) element is at base:
// the rule of cgc_activity in cgc/lossless/_lossless_context.h, reading the plane-0 symbols of the
// row above as the top bytes of the residuals already stored in out.
__device__ __forceinline__ unsigned activity(const unsigned char* out, long long base,
                                             int cols, int w, int y, int x, int nbytes) {
    if (y == 0 || w < CGC_ACTIVITY_MIN_WIDTH) return 0u;
    const unsigned char* up = out + (base + (long long)(y - 1) * cols) * nbytes + nbytes - 1;
    const unsigned a = up[(x > 0 ? x - 1 : x) * nbytes] + 2u * up[x * nbytes]
                       + up[(x + 1 < w ? x + 1 : x) * nbytes];
    return a < 255u ? a : 255u;
}

// Bytes ahead of its positions in the coded stream and in each raw plane that a warp asks
// the L1 cache for at each step (0: none), per element size.  A tile's bytes are read front
// to back, and the first read of each cache line otherwise stalls the warp for a whole trip
// to memory; bench/rans_launch.py sweeps it
// (measurements: docs/tuning.md, "kernels/rans.cu: prefetch and launch shape").
#ifndef RANS_PREFETCH_BYTES_1
#define RANS_PREFETCH_BYTES_1 0
#endif
#ifndef RANS_PREFETCH_BYTES_2
#define RANS_PREFETCH_BYTES_2 0
#endif
#ifndef RANS_PREFETCH_BYTES_4
#define RANS_PREFETCH_BYTES_4 256
#endif

__device__ __forceinline__ void prefetch_line(const unsigned char* p) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
#endif
}

// The kernels' parameters, the same for every element size.
#define DECODE_PARAMETERS                                                                      \
    const unsigned char *__restrict__ data, const long long *__restrict__ tile_offset,          \
        const long long *__restrict__ tile_size, const unsigned char *__restrict__ tile_pred,   \
        const unsigned char *__restrict__ tile_group,                                          \
        const unsigned *__restrict__ tile_state, const unsigned char *__restrict__ ctx_map,    \
        const int *__restrict__ plane_info, const unsigned *__restrict__ freq_start,            \
        const unsigned char *__restrict__ lookup,                                              \
        int lookup_width, int rows, int cols, int tile_h, int tile_w, int kind, int n_tiles,   \
        unsigned char *__restrict__ out, int *__restrict__ errors
#define DECODE_ARGUMENTS                                                                       \
    data, tile_offset, tile_size, tile_pred, tile_group, tile_state, ctx_map, plane_info,       \
        freq_start, lookup, lookup_width, rows, cols, tile_h, tile_w, kind, n_tiles, out, errors

// NBYTES (1, 2 or 4) is the element size: a constant, so that the per-plane loops unroll
// and their state stays in registers.  PREFETCH: RANS_PREFETCH_BYTES_<NBYTES>.
template <int NBYTES, int PREFETCH>
__device__ __forceinline__ void decode_tiles(DECODE_PARAMETERS) {
    constexpr int nbytes = NBYTES;
    const long long k = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (k >= n_tiles) return;
    const int lane = threadIdx.x;
    const unsigned lanes_below = (1u << lane) - 1u;
    const int tiles_x = (cols + tile_w - 1) / tile_w;
    const int y0 = (int)(k / tiles_x) * tile_h;
    const int x0 = (int)(k % tiles_x) * tile_w;
    const int h = min(tile_h, rows - y0);
    const int w = min(tile_w, cols - x0);
    const int n = h * w;
    const long long base = (long long)y0 * cols + x0;
    const int bits = 8 * nbytes;
    const unsigned mask = nbytes == 4 ? 0xFFFFFFFFu : (1u << bits) - 1u;
    const int pred = tile_pred[k];

    // Per plane: probability bits and the first table of the tile's group (CGC_GROUP_RAW: -1).
    int plane_bits[NBYTES], plane_table[NBYTES], plane_nctx[NBYTES];
    int nraw = 0;
#pragma unroll
    for (int p = 0; p < NBYTES; ++p) {
        const int g = tile_group[k * NBYTES + p];
        plane_bits[p] = plane_info[3 * p + 2];
        plane_nctx[p] = plane_info[3 * p + 1];
        plane_table[p] = g == CGC_GROUP_RAW ? -1 : plane_info[3 * p] + g * plane_nctx[p];
        nraw += g == CGC_GROUP_RAW;
    }
    // Offsets into the tile's own bytes: a valid tile is far under 2^31 bytes (at most
    // 2^18 elements), and a larger size can only fail the end-of-stream check.
    const unsigned char* __restrict__ tile_data = data + tile_offset[k];
    const long long size = tile_size[k];
    const int end = (int)(size < 0x7FFFFFFFLL ? size : 0x7FFFFFFFLL) - nraw * n;
    int pos = 0;

    unsigned x = tile_state[k * CGC_LOSSLESS_LANES + lane];
    int err = 0;
    const int nsteps = (n + CGC_LOSSLESS_LANES - 1) / CGC_LOSSLESS_LANES;
    // Uniform over the warp, so the barrier below is reached by every lane or none.
    const bool by_activity = plane_table[0] >= 0 && plane_nctx[0] > 1;
    const bool finished = pred == CGC_PRED_NONE && !by_activity;
    // (row, col) of element e = t * 32 + lane inside the tile, stepped without division.
    int ey = lane / w, ex = lane % w;
    for (int t = 0; t < nsteps; ++t, ex += CGC_LOSSLESS_LANES) {
        while (ex >= w) {
            ex -= w;
            ++ey;
        }
        if (PREFETCH > 0 && lane <= nraw) {
            // Lane 0 looks ahead in the coded stream, lane 1 + r in raw plane r.
            const int ahead = PREFETCH
                              + (lane == 0 ? pos : end + (lane - 1) * n + t * CGC_LOSSLESS_LANES);
            if (ahead < (lane == 0 ? end : end + lane * n)) prefetch_line(tile_data + ahead);
        }
        const int e = t * CGC_LOSSLESS_LANES + lane;
        const bool active = e < n;
        // The activity reads residuals other lanes stored at earlier steps.
        if (by_activity) __syncwarp();
        unsigned acc = 0, prev = by_activity && active
                                     ? activity(out, base, cols, w, ey, ex, nbytes)
                                     : 0u;
        int raw_at = end;
#pragma unroll
        for (int p = 0; p < NBYTES; ++p) {
            unsigned sym = 0;
            if (plane_table[p] < 0) {
                if (active) sym = tile_data[raw_at + e];
                raw_at += n;
            } else {
                unsigned need = 0;
                if (active) {
                    const int pb = plane_bits[p];
                    const unsigned slot = x & ((1u << pb) - 1u);
                    const int table = plane_table[p] + ctx_map[256 * p + prev];
                    sym = lookup[table * lookup_width + slot];
                    const unsigned fs = freq_start[table * 256 + sym];
                    x = ((fs & 0xFFFFu) + 1u) * (x >> pb) + slot - (fs >> 16);
                    need = x < (1u << 15) ? 2u : (x < CGC_RANS_L ? 1u : 0u);
                }
                const unsigned one = __ballot_sync(0xFFFFFFFFu, need >= 1u);
                const unsigned two = __ballot_sync(0xFFFFFFFFu, need == 2u);
                // Written out for need <= 2: a general loop compiles to an unrolled one with
                // a bounds check and a branch per possible byte.
                if (need != 0u) {
                    const int q = pos + __popc(one & lanes_below) + __popc(two & lanes_below);
                    unsigned bytes = q < end ? tile_data[q] : 0u;
                    if (need == 2u) bytes = (bytes << 8) | (q + 1 < end ? tile_data[q + 1] : 0u);
                    if (q + (int)need > end) err = 1;
                    x = (x << (8u * need)) | bytes;
                }
                pos += __popc(one) + __popc(two);
            }
            acc = (acc << 8) | sym;
            prev = sym;
        }
        if (active) {
            store_value(out, base + (long long)ey * cols + ex, nbytes,
                        finished ? untransform(acc, kind, bits, mask) : acc);
        }
    }
    if (err == 0 && (pos != end || x != CGC_RANS_L)) err = 2;
    errors[k * CGC_LOSSLESS_LANES + lane] = err;
    if (finished) return;
    __syncwarp();

    if (pred == CGC_PRED_NONE) {
        for (int e = lane; e < n; e += CGC_LOSSLESS_LANES) {
            const long long at = base + (long long)(e / w) * cols + e % w;
            store_value(out, at, nbytes,
                        untransform(load_value(out, at, nbytes), kind, bits, mask));
        }
        return;
    }
    // Wavefront over bands of 32 rows: at step s lane j reconstructs (band + j, s - j).  Its
    // left neighbour is its own previous value, its top neighbour lane j - 1's previous value
    // (a shuffle), its top-left neighbour the top it received one step earlier; lane 0 reads
    // the row above the band back from out, where it is stored untransformed.
    for (int band = 0; band < h; band += CGC_LOSSLESS_LANES) {
        const int y = band + lane;
        unsigned last = 0, top_left = 0;
        for (int s = 0; s < w + CGC_LOSSLESS_LANES - 1; ++s) {
            unsigned top = __shfl_up_sync(0xFFFFFFFFu, last, 1);
            const int xx = s - lane;
            if (y < h && xx >= 0 && xx < w) {
                const long long at = base + (long long)y * cols + xx;
                if (lane == 0 && y > 0) {
                    top = transform(load_value(out, at - cols, nbytes), kind, bits, mask);
                }
                const unsigned z = load_value(out, at, nbytes);
                const unsigned r = ((z >> 1) ^ (0u - (z & 1u))) & mask;
                const unsigned v = (r + predict(pred, y, xx, last, top, top_left, mask)) & mask;
                store_value(out, at, nbytes, untransform(v, kind, bits, mask));
                last = v;
            }
            top_left = top;
        }
        // Lane 0 of the next band reads what lane 31 stored.
        __syncwarp();
    }
}

// Launch bounds: blocks of WARPS_PER_BLOCK warps, and as many resident blocks per SM as the
// registers allow without spills (ptxas: 48 registers for 4-byte elements, 40 otherwise);
// one warp's decode is a chain of dependent loads, so more resident warps hide more latency
// (measurements: docs/tuning.md, "kernels/rans.cu: prefetch and launch shape").  One entry
// point per element size.  bench/rans_launch.py compiles other values through -D to compare
// them; cgc/lossless/cuda.py launches with WARPS_PER_BLOCK warps per block.
#ifndef WARPS_PER_BLOCK
#define WARPS_PER_BLOCK 4
#endif
#ifndef MIN_BLOCKS_1
#define MIN_BLOCKS_1 12
#endif
// sm_80's ptxas spills the 2-byte decoder at 40 registers where sm_90's does not.
#ifndef MIN_BLOCKS_2
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define MIN_BLOCKS_2 10
#else
#define MIN_BLOCKS_2 12
#endif
#endif
#ifndef MIN_BLOCKS_4
#define MIN_BLOCKS_4 10
#endif

extern "C" __global__ void __launch_bounds__(CGC_LOSSLESS_LANES * WARPS_PER_BLOCK, MIN_BLOCKS_1)
    rans_decode_tiles_1(DECODE_PARAMETERS) {
    decode_tiles<1, RANS_PREFETCH_BYTES_1>(DECODE_ARGUMENTS);
}

extern "C" __global__ void __launch_bounds__(CGC_LOSSLESS_LANES * WARPS_PER_BLOCK, MIN_BLOCKS_2)
    rans_decode_tiles_2(DECODE_PARAMETERS) {
    decode_tiles<2, RANS_PREFETCH_BYTES_2>(DECODE_ARGUMENTS);
}

extern "C" __global__ void __launch_bounds__(CGC_LOSSLESS_LANES * WARPS_PER_BLOCK, MIN_BLOCKS_4)
    rans_decode_tiles_4(DECODE_PARAMETERS) {
    decode_tiles<4, RANS_PREFETCH_BYTES_4>(DECODE_ARGUMENTS);
}
