/* AVX2 decoder for the full steps of a cgc.lossless tile (docs/lossless-format.md).  Read me
first: this note, the next, and those on CGC_AVX2_PROB_BITS, CGC_AVX2_STEP_BYTES and
cgc_avx2_one_byte.  Same symbol order as the scalar decoder in _lossless_cy.pyx: for each
step, for each coded plane, lanes 0..31 in order, all reading refill bytes from one shared
stream.  The 32 lane states live in four 8-lane vectors; each vector decodes its 8 symbols
at once and finds each lane's refill bytes at pos + (exclusive prefix sum of the lanes'
byte needs), which a 256-entry table gives from the 8-bit masks "needs >= 1 byte" and
"needs 2 bytes". */

/* The build needs no -mavx2: the functions carry a target attribute and are only called
when cgc_have_avx2() found the instructions at run time.  Elsewhere (other CPUs, other
compilers) cgc_have_avx2() is 0 and the scalar decoder runs alone. */
#ifndef CGC_LOSSLESS_AVX2_H
#define CGC_LOSSLESS_AVX2_H

#include <stddef.h>
#include <stdint.h>

#include "_lossless_context.h"

#define CGC_AVX2_LANES 32
#define CGC_AVX2_RANS_L (1u << 23)
/* Tables are arrays of 2**12 packed slot entries (cgc_avx2_entry), one load per symbol,
   built only when every coded plane uses 12-bit probabilities, the precision the encoder
   writes; others take the scalar path.  A lane's table is its plane's first table for the
   tile's group plus the context number, which the context map gives for the byte of plane
   p - 1 (or the plane-0 activity): looked up 32 at a time with byte shuffles, not gathers. */
#define CGC_AVX2_PROB_BITS 12
#define CGC_AVX2_SLOTS (1 << CGC_AVX2_PROB_BITS)
/* Bytes one plane's step may touch past pos: an 8-lane group consumes at most 16 bytes, so
   it loads the 16 at its start once (after at most 3 * 16 consumed by the groups before
   it) and hands each lane its bytes with a shuffle.  A step of P coded planes may thus read
   up to 64 * P bytes past pos: the loop stops at the first step for which fewer remain,
   and the scalar decoder, which checks each byte, finishes the tile. */
#define CGC_AVX2_STEP_BYTES (4 * 16)

/* The entry of a table slot: symbol | (freq - 1) << 8 | (slot - start) << 20, where the
   symbol owns slots [start, start + freq) of the 2**12. */
static inline uint32_t cgc_avx2_entry(uint32_t symbol, uint32_t freq, uint32_t offset) {
    return symbol | (freq - 1) << 8 | offset << 20;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CGC_AVX2_TARGET __attribute__((target("avx2,popcnt")))

/* prefix8[m] holds, for lane j = 0..7, the number of bits of m below bit j. */
static uint8_t cgc_avx2_prefix8[256][8];
/* one_byte[m]: when the lanes in mask m need one refill byte each and no lane needs two
   (all but a few per cent of groups), the shuffle that moves lane j's byte (stream byte
   prefix8[m][j]) into the low byte of lane j's dword, zeroing every other byte: faster
   than the general path (docs/tuning.md, "lossless/_lossless_avx2.h: AVX2 decoder"). */
static uint8_t cgc_avx2_one_byte[256][32] __attribute__((aligned(32)));

static int cgc_have_avx2(void) {
    int m, j, c;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("popcnt"))
        return 0;
    for (m = 0; m < 256; m++)
        for (j = 0, c = 0; j < 8; j++) {
            cgc_avx2_prefix8[m][j] = (uint8_t)c;
            cgc_avx2_one_byte[m][4 * j] = (m >> j) & 1 ? (uint8_t)c : 0x80;
            cgc_avx2_one_byte[m][4 * j + 1] = cgc_avx2_one_byte[m][4 * j + 2] =
                cgc_avx2_one_byte[m][4 * j + 3] = 0x80;
            c += (m >> j) & 1;
        }
    return 1;
}

/* One 8-lane group of one plane: decodes its symbols into *sym (as int32), updates the
   states in *x and returns how many stream bytes the group consumed. */
CGC_AVX2_TARGET static inline int cgc_avx2_group(
        __m256i *x, __m256i *sym, __m256i table, const uint32_t *entries,
        const uint8_t *stream) {
    /* Per dword: the byte index of each lane's refill position, copied to its 4 bytes, plus
       3, 2, 1, 0 so that the shuffle assembles the 4 stream bytes most significant first. */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
                                            0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
    const __m256i big_endian = _mm256_set1_epi32(0x00010203);
    /* The 8 table entries loaded one by one (gcc turns the index array into lane
       extracts): AVX2's gather was slower on the AMD Zen 3 CPU this was measured on
       (docs/tuning.md, "lossless/_lossless_avx2.h: AVX2 decoder"). */
    uint32_t index[8] __attribute__((aligned(32))), entry[8] __attribute__((aligned(32)));
    __m256i e;
    int j;
    _mm256_store_si256(
        (__m256i *)index,
        _mm256_add_epi32(table, _mm256_and_si256(*x, _mm256_set1_epi32(CGC_AVX2_SLOTS - 1))));
    for (j = 0; j < 8; j++)
        entry[j] = entries[index[j]];
    e = _mm256_load_si256((const __m256i *)entry);
    __m256i freq = _mm256_add_epi32(
        _mm256_and_si256(_mm256_srli_epi32(e, 8), _mm256_set1_epi32(CGC_AVX2_SLOTS - 1)),
        _mm256_set1_epi32(1));
    /* freq * (x >> 12) + bias < 2**31: the signed compares below are exact. */
    __m256i v = _mm256_add_epi32(
        _mm256_mullo_epi32(freq, _mm256_srli_epi32(*x, CGC_AVX2_PROB_BITS)),
        _mm256_srli_epi32(e, 20));
    __m256i one = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)CGC_AVX2_RANS_L), v);
    __m256i two = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(CGC_AVX2_RANS_L >> 8)), v);
    int m1 = _mm256_movemask_ps(_mm256_castsi256_ps(one));
    int m2 = _mm256_movemask_ps(_mm256_castsi256_ps(two));
    *sym = _mm256_and_si256(e, _mm256_set1_epi32(0xFF));
    if (__builtin_expect(m2 == 0, 1)) { /* one table load and a shuffle place every byte */
        __m256i bytes = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)stream)),
            _mm256_load_si256((const __m256i *)cgc_avx2_one_byte[m1]));
        *x = _mm256_or_si256(_mm256_blendv_epi8(v, _mm256_slli_epi32(v, 8), one), bytes);
        return __builtin_popcount(m1);
    }
    __m256i at = _mm256_add_epi32(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)cgc_avx2_prefix8[m1])),
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)cgc_avx2_prefix8[m2])));
    /* The group consumes at most 16 bytes: lane j takes bytes at_j .. at_j + need_j - 1 of
       them; bytes a shuffle index beyond 15 picks are shifted out below. */
    __m256i bytes = _mm256_shuffle_epi8(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)stream)),
        _mm256_add_epi32(_mm256_shuffle_epi8(at, spread), big_endian));
    /* need = 0, 1 or 2 bytes: x = x << 8 need | top 8 need bits of the 4 bytes (variable
       shifts by 32 give 0, which is what need = 0 wants). */
    __m256i bits = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(),
                                                      _mm256_add_epi32(one, two)), 3);
    *x = _mm256_or_si256(_mm256_sllv_epi32(v, bits),
                         _mm256_srlv_epi32(bytes, _mm256_sub_epi32(_mm256_set1_epi32(32),
                                                                   bits)));
    return __builtin_popcount(m1) + __builtin_popcount(m2);
}

/* The context numbers of 32 context bytes c through map (256 bytes, each < 16): one
   16-entry shuffle per row of 16 bytes (high nibble) whose map is not all zero; rows holds
   one bit per such row.  The maps the encoder writes for float mantissas rank a few
   exponents, so few rows have a non-zero context: this costs a handful of instructions
   where looking each lane's context up in a 256-entry table cost a load per lane. */
CGC_AVX2_TARGET static inline __m256i cgc_avx2_map_bytes(__m256i c, const uint8_t *map,
                                                         unsigned rows) {
    const __m256i nibble = _mm256_set1_epi8(15);
    __m256i lo = _mm256_and_si256(c, nibble);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
    __m256i r = _mm256_setzero_si256();
    while (rows != 0) {
        int h = __builtin_ctz(rows);
        __m256i row = _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const __m128i *)(map + 16 * h)));
        rows &= rows - 1;
        r = _mm256_or_si256(r, _mm256_and_si256(_mm256_cmpeq_epi8(hi, _mm256_set1_epi8((char)h)),
                                                _mm256_shuffle_epi8(row, lo)));
    }
    return r;
}

/* Bit h set where map[16 h .. 16 h + 15] holds a non-zero context. */
static inline unsigned cgc_avx2_map_rows(const uint8_t *map) {
    unsigned rows = 0;
    int j;
    for (j = 0; j < 256; j++)
        if (map[j] != 0)
            rows |= 1u << (j >> 4);
    return rows;
}

/* The plane-0 context input (cgc_activity) of elements e0 .. e0 + 31 of a tile w wide
   whose plane-0 symbols are s.  Where the 32 lie inside one row, off its edges and below
   row 0, three loads of the row above give up-left, up and up-right; elsewhere the scalar
   rule runs (via buf). */
CGC_AVX2_TARGET static inline __m256i cgc_avx2_step_activity(const uint8_t *s, ptrdiff_t w,
                                                             ptrdiff_t e0, uint8_t *buf) {
    ptrdiff_t y = e0 / w, x = e0 - y * w;
    if (y >= 1 && x >= 1 && x + CGC_AVX2_LANES < w) {
        const uint8_t *up = s + e0 - w;
        const __m256i zero = _mm256_setzero_si256();
        __m256i l = _mm256_loadu_si256((const __m256i *)(up - 1));
        __m256i m = _mm256_loadu_si256((const __m256i *)up);
        __m256i r = _mm256_loadu_si256((const __m256i *)(up + 1));
        /* 16-bit sums within each 128-bit half; packus caps them at 255 in byte order. */
        __m256i lo = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_unpacklo_epi8(l, zero), _mm256_unpacklo_epi8(r, zero)),
            _mm256_slli_epi16(_mm256_unpacklo_epi8(m, zero), 1));
        __m256i hi = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_unpackhi_epi8(l, zero), _mm256_unpackhi_epi8(r, zero)),
            _mm256_slli_epi16(_mm256_unpackhi_epi8(m, zero), 1));
        return _mm256_packus_epi16(lo, hi);
    }
    cgc_step_activity(s, w, e0, CGC_AVX2_LANES, buf);
    return _mm256_loadu_si256((const __m256i *)buf);
}

/* Decode steps t = 0, 1, ... of a tile while each is full (32 elements, t < full_steps)
   and its planes cannot read past end; returns the number of steps done, with x (the 32
   lane states) and *pos advanced past them.  planes: the nplanes coded planes in order;
   out[i] receives plane i's bytes (element e at out[i][e]).  Symbol e of plane i uses the
   table at base[i] + CGC_AVX2_SLOTS * map[i][c], where c is ctx[i][e] (the previous plane's
   byte), or, when ctx[i] is NULL, 0, or, for i = 0 when activity_w > 0, the activity of
   element e computed from out[0], a tile activity_w wide; rows[i] is
   cgc_avx2_map_rows(map[i]).  Tables hold CGC_AVX2_SLOTS entries (see cgc_avx2_entry). */
CGC_AVX2_TARGET static ptrdiff_t cgc_avx2_decode_steps(
        uint32_t *x_lanes, int nplanes, uint8_t **out, const uint8_t **ctx,
        const int32_t *base, const uint8_t **map, const unsigned *rows,
        const uint32_t *entries, const uint8_t *data, ptrdiff_t *pos, ptrdiff_t end,
        ptrdiff_t full_steps, ptrdiff_t activity_w) {
    __m256i x[4], sym[4], first[4];
    uint8_t activity[CGC_AVX2_LANES];
    ptrdiff_t t, p = *pos, step_bytes = (ptrdiff_t)CGC_AVX2_STEP_BYTES * nplanes;
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int g, i;
    for (g = 0; g < 4; g++)
        x[g] = _mm256_loadu_si256((const __m256i *)(x_lanes + 8 * g));
    for (t = 0; t < full_steps && end - p >= step_bytes; t++) {
        ptrdiff_t e0 = t * CGC_AVX2_LANES;
        for (i = 0; i < nplanes; i++) {
            int by_activity = i == 0 && activity_w > 0;
            if (ctx[i] == NULL && !by_activity) {
                first[0] = first[1] = first[2] = first[3] = _mm256_set1_epi32(base[i]);
            } else {
                __m256i k = cgc_avx2_map_bytes(
                    by_activity ? cgc_avx2_step_activity(out[0], activity_w, e0, activity)
                                : _mm256_loadu_si256((const __m256i *)(ctx[i] + e0)),
                    map[i], rows[i]);
                __m128i half[2] = {_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1)};
#pragma GCC unroll 4
                for (g = 0; g < 4; g++)
                    first[g] = _mm256_add_epi32(
                        _mm256_set1_epi32(base[i]),
                        _mm256_slli_epi32(
                            _mm256_cvtepu8_epi32(g & 1 ? _mm_srli_si128(half[g >> 1], 8)
                                                       : half[g >> 1]),
                            CGC_AVX2_PROB_BITS));
            }
            /* Unrolled, so that x[] stays in registers (a loop that gcc kept in memory was
               slower). */
#pragma GCC unroll 4
            for (g = 0; g < 4; g++)
                p += cgc_avx2_group(&x[g], &sym[g], first[g], entries, data + p);
            /* 4 x 8 int32 symbols < 256 -> 32 bytes in lane order. */
            _mm256_storeu_si256(
                (__m256i *)(out[i] + e0),
                _mm256_permutevar8x32_epi32(
                    _mm256_packus_epi16(_mm256_packs_epi32(sym[0], sym[1]),
                                        _mm256_packs_epi32(sym[2], sym[3])),
                    order));
        }
    }
    for (g = 0; g < 4; g++)
        _mm256_storeu_si256((__m256i *)(x_lanes + 8 * g), x[g]);
    *pos = p;
    return t;
}

#else

static int cgc_have_avx2(void) { return 0; }

static unsigned cgc_avx2_map_rows(const uint8_t *map) {
    (void)map;
    return 0;
}

static ptrdiff_t cgc_avx2_decode_steps(
        uint32_t *x_lanes, int nplanes, uint8_t **out, const uint8_t **ctx,
        const int32_t *base, const uint8_t **map, const unsigned *rows,
        const uint32_t *entries, const uint8_t *data, ptrdiff_t *pos, ptrdiff_t end,
        ptrdiff_t full_steps, ptrdiff_t activity_w) {
    (void)x_lanes; (void)nplanes; (void)out; (void)ctx; (void)base; (void)map; (void)rows;
    (void)entries; (void)data; (void)pos; (void)end; (void)full_steps; (void)activity_w;
    return 0;
}

#endif
#endif
