/* CRC-32 of the zlib and PNG formats (reflected polynomial 0xEDB88320), the checksum of
cgc.lossless streams, by carry-less multiplication: folding 64 bytes at a time with
PCLMULQDQ is several times faster than zlib.crc32's tables and bit-identical (tests compare
with zlib.crc32 on every length and alignment class; docs/tuning.md, "native/crc32.h: CRC-32").
Bytes that do not fill a 16-byte block, and whole inputs under 64 bytes or on CPUs without
PCLMULQDQ and SSE4.1, go through the bitwise loop.  The state passed around is zlib's
internal one (the inverted CRC); cgc_crc32 takes and returns the external value. */
#ifndef CGC_CRC32_H
#define CGC_CRC32_H

#include <stddef.h>
#include <stdint.h>

#define CGC_CRC32_POLY 0xEDB88320u

static uint32_t cgc_crc32_bitwise(uint32_t state, const uint8_t *p, size_t n) {
    int k;
    while (n--) {
        state ^= *p++;
        for (k = 0; k < 8; k++)
            state = (state >> 1) ^ (CGC_CRC32_POLY & (0u - (state & 1u)));
    }
    return state;
}

/* The method: the message is a polynomial over GF(2) in reflected bit order.  Four 128-bit
   accumulators each absorb every fourth 16-byte block: acc = acc.lo * k1 ^ acc.hi * k2 ^
   next block, where k1, k2 = x^(512+32), x^(512-32) mod P (bit-reflected, shifted left by
   one) move a block 512 bits further.  The four are then folded into one (k3, k4: 128
   bits), the single remaining 16-byte blocks likewise, the 128 bits reduced to 64 (k4) and
   32 (k5 = x^64 mod P), and a Barrett reduction (mu = x^64 / P, and P itself) leaves the
   32-bit remainder.  The reflected constants, in order: k1, k2, k3, k4, k5, mu, P. */
static const uint64_t cgc_crc32_constants[7] = {
    0x154442bd4ull, 0x1c6e41596ull, 0x1751997d0ull, 0x0ccaa009eull, 0x163cd6124ull,
    0x1f7011641ull, 0x1db710641ull};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CGC_CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

static int cgc_have_clmul(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}

/* acc moved 128 * (blocks between) bits on by k (lo: k1 or k3, hi: k2 or k4), plus next. */
CGC_CLMUL_TARGET static inline __m128i cgc_crc32_fold(__m128i acc, __m128i k, __m128i next) {
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(acc, k, 0x00),
                                       _mm_clmulepi64_si128(acc, k, 0x11)),
                         next);
}

/* The state after n bytes, n >= 64 and a multiple of 16. */
CGC_CLMUL_TARGET static uint32_t cgc_crc32_clmul(uint32_t state, const uint8_t *p, size_t n) {
    const __m128i k12 = _mm_set_epi64x((long long)cgc_crc32_constants[1],
                                       (long long)cgc_crc32_constants[0]);
    const __m128i k34 = _mm_set_epi64x((long long)cgc_crc32_constants[3],
                                       (long long)cgc_crc32_constants[2]);
    const __m128i k5 = _mm_set_epi64x(0, (long long)cgc_crc32_constants[4]);
    const __m128i mu_p = _mm_set_epi64x((long long)cgc_crc32_constants[5],
                                        (long long)cgc_crc32_constants[6]);
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i a0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p),
                               _mm_cvtsi32_si128((int)state));
    __m128i a1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i a2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i a3 = _mm_loadu_si128((const __m128i *)(p + 48));
    __m128i t;
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        a0 = cgc_crc32_fold(a0, k12, _mm_loadu_si128((const __m128i *)p));
        a1 = cgc_crc32_fold(a1, k12, _mm_loadu_si128((const __m128i *)(p + 16)));
        a2 = cgc_crc32_fold(a2, k12, _mm_loadu_si128((const __m128i *)(p + 32)));
        a3 = cgc_crc32_fold(a3, k12, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    a0 = cgc_crc32_fold(a0, k34, a1);
    a0 = cgc_crc32_fold(a0, k34, a2);
    a0 = cgc_crc32_fold(a0, k34, a3);
    for (; n >= 16; p += 16, n -= 16)
        a0 = cgc_crc32_fold(a0, k34, _mm_loadu_si128((const __m128i *)p));
    /* 128 -> 64 bits: the low half moved 64 bits on (k4) onto the high half. */
    a0 = _mm_xor_si128(_mm_srli_si128(a0, 8), _mm_clmulepi64_si128(a0, k34, 0x10));
    /* 64 -> 32 bits: the low 32 moved 32 bits on (k5) onto the rest. */
    a0 = _mm_xor_si128(_mm_srli_si128(a0, 4),
                       _mm_clmulepi64_si128(_mm_and_si128(a0, low32), k5, 0x00));
    /* Barrett: the quotient's estimate from mu, times P, cancels all but the remainder. */
    t = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(a0, low32), mu_p, 0x10), low32);
    a0 = _mm_xor_si128(a0, _mm_clmulepi64_si128(t, mu_p, 0x00));
    return (uint32_t)_mm_extract_epi32(a0, 1);
}

#else

static int cgc_have_clmul(void) { return 0; }

static uint32_t cgc_crc32_clmul(uint32_t state, const uint8_t *p, size_t n) {
    return cgc_crc32_bitwise(state, p, n);
}

#endif

/* zlib.crc32(p[:n], value) with or without (use_clmul = 0) carry-less multiplication. */
static uint32_t cgc_crc32(uint32_t value, const uint8_t *p, size_t n, int use_clmul) {
    uint32_t state = ~value;
    if (use_clmul && n >= 64) {
        size_t blocks = n & ~(size_t)15;
        state = cgc_crc32_clmul(state, p, blocks);
        p += blocks;
        n -= blocks;
    }
    return ~cgc_crc32_bitwise(state, p, n);
}

/* a * b mod P, polynomials in the CRC's reflected order (bit 31 holds x^0). */
static uint32_t cgc_crc32_mulmod(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    int k;
    for (k = 0; k < 32; k++) {
        if (a & (0x80000000u >> k))
            product ^= b;
        b = (b >> 1) ^ (CGC_CRC32_POLY & (0u - (b & 1u))); /* b times x */
    }
    return product;
}

/* zlib.crc32(A + B) from crc_a = zlib.crc32(A), crc_b = zlib.crc32(B) and len(B), so that
   chunks of a long input may be summed apart (in parallel): the CRC of A followed by B is
   the CRC of A times x^(8 len B) mod P, plus the CRC of B (the initial and final
   inversions cancel between the two). */
static uint32_t cgc_crc32_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
    uint32_t shift = 0x80000000u, power = 0x80000000u >> 8; /* x^0, x^8 */
    for (; len_b != 0; len_b >>= 1) {
        if (len_b & 1)
            shift = cgc_crc32_mulmod(shift, power);
        power = cgc_crc32_mulmod(power, power);
    }
    return cgc_crc32_mulmod(shift, crc_a) ^ crc_b;
}

#endif
