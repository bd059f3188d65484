// GPU decoder of cgc.lossless tiles: one block of one warp (32 threads) per tile.
//
// Read me first (docs/lossless-format.md is the specification; cgc/_lossless.pyx holds the
// CPU decoder this kernel must match bit for bit)
// -----------------------------------------------------------------------------------------
// * Element e of a tile (row-major inside the tile, tile-local width w) belongs to lane
//   e % 32 and is decoded at step e / 32.  Lane j owns rANS state x_j, a uint32 kept in
//   [2^23, 2^31) between symbols.
// * All coded symbols of a tile share one byte stream, consumed in the order
//   (step, plane, lane).  After decoding its symbol every lane knows how many refill bytes
//   it needs (0, 1 or 2: x >= 2^7 after any decode with at most 16 probability bits); an
//   exclusive prefix sum of those counts over the lanes gives each lane its bytes, and the
//   stream advances by the total.  The sum is two ballots ("needs >= 1", "needs 2") and
//   popcounts of the lanes below.  The encoder wrote the exact reverse order.
// * The table of a symbol is plane_info[p].tbase + group * nctx + ctx_map[p][previous
//   plane's byte of the same element]; for plane 0, ctx_map[0][activity of the row above]
//   (activity() below).  Group 255 means the plane is stored raw after the stream, plane
//   after plane, each in element order.
// * Phases of a block, separated by barriers: residuals (written into out), inverse
//   predictor as a wavefront (lane j owns row j of each band of 32 rows, one column behind
//   lane j - 1), inverse integer transform.
// * errors[tile * 32 + lane] is set non-zero where that lane saw a truncated or
//   inconsistent stream; every read is bounded by the tile's own bytes.

#define LANES 32
#define RANS_L (1u << 23)
#define GROUP_RAW 255
#define PRED_NONE 0
#define PRED_LEFT 1
#define PRED_TOP 2
#define PRED_AVG 3
#define PRED_PLANAR 4
#define KIND_SIGNED 1
#define KIND_FLOAT 2
#define ACTIVITY_MIN_WIDTH 33

__device__ __forceinline__ unsigned load_value(const unsigned char* out, long long index,
                                               int nbytes) {
    const unsigned char* p = out + index * nbytes;
    unsigned v = 0;
    for (int b = nbytes - 1; b >= 0; --b) v = (v << 8) | p[b];
    return v;
}

__device__ __forceinline__ void store_value(unsigned char* out, long long index, int nbytes,
                                            unsigned v) {
    unsigned char* p = out + index * nbytes;
    for (int b = 0; b < nbytes; ++b) p[b] = (unsigned char)(v >> (8 * b));
}

// Same rules as predict() in cgc/_lossless.pyx; base is the tile's (0, 0) element.
__device__ __forceinline__ unsigned predict(int pred, const unsigned char* out, long long base,
                                            int cols, int y, int x, int nbytes,
                                            unsigned mask) {
    if (y == 0) return x > 0 ? load_value(out, base + x - 1, nbytes) : 0u;
    if (x == 0) return load_value(out, base + (long long)(y - 1) * cols, nbytes);
    const unsigned a = load_value(out, base + (long long)y * cols + x - 1, nbytes);
    const unsigned b = load_value(out, base + (long long)(y - 1) * cols + x, nbytes);
    const unsigned c = load_value(out, base + (long long)(y - 1) * cols + x - 1, nbytes);
    if (pred == PRED_LEFT) return a;
    if (pred == PRED_TOP) return b;
    if (pred == PRED_AVG) return (a >> 1) + (b >> 1) + (a & b & 1u);
    if (pred == PRED_PLANAR) return (a + b - c) & mask;
    const unsigned lo = a < b ? a : b;
    const unsigned hi = a ^ b ^ lo;
    if (c >= hi) return lo;
    if (c <= lo) return hi;
    return (a + b - c) & mask;
}

// Plane-0 context input of element (y, x) of a tile w wide whose (0, 0) element is at base:
// the rule of cgc_activity in cgc/_lossless_context.h, reading the plane-0 symbols of the
// row above as the top bytes of the residuals already stored in out.
__device__ __forceinline__ unsigned activity(const unsigned char* out, long long base,
                                             int cols, int w, int y, int x, int nbytes) {
    if (y == 0 || w < ACTIVITY_MIN_WIDTH) return 0u;
    const unsigned char* up = out + (base + (long long)(y - 1) * cols) * nbytes + nbytes - 1;
    const unsigned a = up[(x > 0 ? x - 1 : x) * nbytes] + 2u * up[x * nbytes]
                       + up[(x + 1 < w ? x + 1 : x) * nbytes];
    return a < 255u ? a : 255u;
}

extern "C" __global__ void rans_decode_tiles(
    const unsigned char* data, const long long* tile_offset, const long long* tile_size,
    const unsigned char* tile_pred, const unsigned char* tile_group,
    const unsigned* tile_state, const unsigned char* ctx_map, const int* plane_info,
    const unsigned* freq, const unsigned* start, const unsigned char* lookup,
    int lookup_width, int rows, int cols, int tile_h, int tile_w, int nbytes, int kind,
    unsigned char* out, int* errors) {
    const int lane = threadIdx.x;
    const unsigned lanes_below = (1u << lane) - 1u;
    const long long k = blockIdx.x;
    const int tiles_x = (cols + tile_w - 1) / tile_w;
    const int y0 = (int)(k / tiles_x) * tile_h;
    const int x0 = (int)(k % tiles_x) * tile_w;
    const int h = min(tile_h, rows - y0);
    const int w = min(tile_w, cols - x0);
    const int n = h * w;
    const long long base = (long long)y0 * cols + x0;
    const unsigned mask = nbytes == 4 ? 0xFFFFFFFFu : (1u << (8 * nbytes)) - 1u;
    const unsigned char* group = tile_group + k * nbytes;

    int nraw = 0;
    for (int p = 0; p < nbytes; ++p) nraw += group[p] == GROUP_RAW;
    long long pos = tile_offset[k];
    const long long end = pos + tile_size[k] - (long long)nraw * n;

    unsigned x = tile_state[k * LANES + lane];
    int err = 0;
    const int nsteps = (n + LANES - 1) / LANES;
    // Uniform over the block, so the barrier below is reached by every lane or none.
    const bool by_activity = group[0] != GROUP_RAW && plane_info[1] > 1;
    for (int t = 0; t < nsteps; ++t) {
        const int e = t * LANES + lane;
        const bool active = e < n;
        // The activity reads residuals other lanes stored at earlier steps.
        if (by_activity) __syncthreads();
        unsigned acc = 0, prev = by_activity && active
                                     ? activity(out, base, cols, w, e / w, e % w, nbytes)
                                     : 0u;
        long long raw_at = end;
        for (int p = 0; p < nbytes; ++p) {
            const int g = group[p];
            unsigned sym = 0;
            if (g == GROUP_RAW) {
                if (active) sym = data[raw_at + e];
                raw_at += n;
            } else {
                unsigned need = 0;
                if (active) {
                    const int pb = plane_info[3 * p + 2];
                    const unsigned slot = x & ((1u << pb) - 1u);
                    const long long table = plane_info[3 * p] + g * plane_info[3 * p + 1]
                                            + ctx_map[256 * p + prev];
                    sym = lookup[table * lookup_width + slot];
                    x = freq[table * 256 + sym] * (x >> pb) + slot - start[table * 256 + sym];
                    need = x < (1u << 15) ? 2u : (x < RANS_L ? 1u : 0u);
                }
                const unsigned one = __ballot_sync(0xFFFFFFFFu, need >= 1u);
                const unsigned two = __ballot_sync(0xFFFFFFFFu, need == 2u);
                long long q = pos + __popc(one & lanes_below) + __popc(two & lanes_below);
                for (unsigned i = 0; i < need; ++i, ++q) {
                    unsigned byte = 0;
                    if (q < end) {
                        byte = data[q];
                    } else {
                        err = 1;
                    }
                    x = (x << 8) | byte;
                }
                pos += __popc(one) + __popc(two);
            }
            acc = (acc << 8) | sym;
            prev = sym;
        }
        if (active) store_value(out, base + (long long)(e / w) * cols + e % w, nbytes, acc);
    }
    if (err == 0 && (pos != end || x != RANS_L)) err = 2;
    errors[k * LANES + lane] = err;
    __syncthreads();

    const int pred = tile_pred[k];
    if (pred != PRED_NONE) {
        for (int band = 0; band < h; band += LANES) {
            const int y = band + lane;
            for (int s = 0; s < w + LANES - 1; ++s) {
                const int xx = s - lane;
                if (y < h && xx >= 0 && xx < w) {
                    const long long at = base + (long long)y * cols + xx;
                    const unsigned z = load_value(out, at, nbytes);
                    const unsigned r = ((z >> 1) ^ (0u - (z & 1u))) & mask;
                    store_value(out, at, nbytes,
                                (r + predict(pred, out, base, cols, y, xx, nbytes, mask)) & mask);
                }
                __syncthreads();
            }
        }
    }

    const int bits = 8 * nbytes;
    for (int e = lane; e < n; e += LANES) {
        const long long at = base + (long long)(e / w) * cols + e % w;
        unsigned v = load_value(out, at, nbytes);
        if (kind == KIND_SIGNED) v ^= 1u << (bits - 1);
        if (kind == KIND_FLOAT) v = ((v >> 1) | (v << (bits - 1))) & mask;
        store_value(out, at, nbytes, v);
    }
}
