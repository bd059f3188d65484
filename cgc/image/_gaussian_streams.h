/* The streams of a .cgc version 3 file: positions as a tree of counts, attributes as
adaptive bit trees (docs/format.md, "Positions stream" and "Attribute streams").  Read me
first: this note and those under "counts", "positions" and "attributes" below.  All
functions return 0 on success, CGC_STREAM_INVALID on input a valid stream cannot hold,
CGC_STREAM_NO_MEMORY when an allocation fails. */
#ifndef CGC_GAUSSIAN_STREAMS_H
#define CGC_GAUSSIAN_STREAMS_H

#include "range_coder.h"

#define CGC_STREAM_INVALID (-1)
#define CGC_STREAM_NO_MEMORY (-2)

/* Counts up to this many are coded as one bit tree each (per count) */
#define CGC_SMALL_COUNT 16
#define CGC_SMALL_COUNT_BITS 5  /* bits of CGC_SMALL_COUNT */
/* Larger counts: the deviation from an even split, zigzagged, as an Elias-gamma code
   whose length is modelled per (bit length of the count, position in the unary prefix) */
#define CGC_COUNT_LENGTHS 22     /* bit lengths of counts up to 2^21 */
/* The most keys a positions stream holds: counts must have bit lengths below
   CGC_COUNT_LENGTHS (the format allows 2^20 Gaussians) */
#define CGC_MAX_POSITIONS (((size_t)1 << (CGC_COUNT_LENGTHS - 1)) - 1)
#define CGC_GAMMA_LENGTHS 24     /* a deviation of at most 2^21 needs 23 bits */
#define CGC_GAMMA_MODELLED 2     /* mantissa bits below the leading one with models */

#define CGC_CONTEXTS 4

typedef struct {
    cgc_prob small[CGC_SMALL_COUNT + 1][1 << CGC_SMALL_COUNT_BITS];
    cgc_prob length[CGC_COUNT_LENGTHS][CGC_GAMMA_LENGTHS + 1];
    cgc_prob mantissa[CGC_COUNT_LENGTHS][CGC_GAMMA_LENGTHS + 1][1 << CGC_GAMMA_MODELLED];
} cgc_count_models;

static inline void cgc_count_models_init(cgc_count_models *m)
{
    cgc_probs_init(&m->small[0][0], sizeof(m->small) / sizeof(cgc_prob));
    cgc_probs_init(&m->length[0][0], sizeof(m->length) / sizeof(cgc_prob));
    cgc_probs_init(&m->mantissa[0][0][0], sizeof(m->mantissa) / sizeof(cgc_prob));
}

static inline int cgc_bit_length(uint64_t v)
{
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

/* ---- counts: k of cnt Gaussians (cnt >= 2, 0 <= k <= cnt) in a node's 0 half -------- */

/* Clustered Gaussians make lopsided counts, which the adaptive models learn: this is what
   the position tree gains over coding positions one by one. */

static inline void cgc_count_encode(cgc_rc_encoder *e, cgc_count_models *m, uint32_t k,
                                    uint32_t cnt)
{
    if (cnt <= CGC_SMALL_COUNT) {
        int bits = cgc_bit_length(cnt);
        unsigned node = 1;
        for (int b = bits - 1; b >= 0; b--) {
            unsigned bit = (k >> b) & 1u;
            cgc_rc_encode_bit(e, &m->small[cnt][node], bit);
            node = 2 * node + bit;
        }
        return;
    }
    int64_t deviation = (int64_t)k - (int64_t)(cnt >> 1);
    uint64_t value = (deviation >= 0 ? 2 * (uint64_t)deviation
                                     : 2 * (uint64_t)(-deviation) - 1) + 1;
    int length = cgc_bit_length(value);
    int count_length = cgc_bit_length(cnt);
    for (int i = 1; i < length; i++)
        cgc_rc_encode_bit(e, &m->length[count_length][i], 1);
    cgc_rc_encode_bit(e, &m->length[count_length][length], 0);
    for (int i = length - 2, j = 0; i >= 0; i--, j++) {
        unsigned bit = (unsigned)(value >> i) & 1u;
        if (j < CGC_GAMMA_MODELLED)
            cgc_rc_encode_bit(e, &m->mantissa[count_length][length][j], bit);
        else
            cgc_rc_encode_direct(e, bit, 1);
    }
}

static inline int cgc_count_decode(cgc_rc_decoder *d, cgc_count_models *m, uint32_t cnt,
                                   uint32_t *k)
{
    if (cnt <= CGC_SMALL_COUNT) {
        int bits = cgc_bit_length(cnt);
        unsigned node = 1;
        for (int b = 0; b < bits; b++)
            node = 2 * node + cgc_rc_decode_bit(d, &m->small[cnt][node]);
        *k = node - (1u << bits);
        return *k <= cnt ? 0 : CGC_STREAM_INVALID;
    }
    int count_length = cgc_bit_length(cnt);
    int length = 1;
    while (cgc_rc_decode_bit(d, &m->length[count_length][length])) {
        if (++length > CGC_GAMMA_LENGTHS)
            return CGC_STREAM_INVALID;
    }
    uint64_t value = 1;
    for (int j = 0; j < length - 1; j++) {
        unsigned bit = j < CGC_GAMMA_MODELLED
            ? cgc_rc_decode_bit(d, &m->mantissa[count_length][length][j])
            : cgc_rc_decode_direct(d, 1);
        value = (value << 1) | bit;
    }
    uint64_t zigzag = value - 1;
    int64_t deviation = (zigzag & 1) ? -(int64_t)((zigzag + 1) >> 1) : (int64_t)(zigzag >> 1);
    int64_t half = (int64_t)(cnt >> 1) + deviation;
    if (half < 0 || half > (int64_t)cnt)
        return CGC_STREAM_INVALID;
    *k = (uint32_t)half;
    return 0;
}

/* ---- positions ---------------------------------------------------------------------- */

/* A quantised position (x, y) with widths (bx, by) is one key of bx + by bits: from the
   top, each bit is the next bit of x while x has at least as many bits left as y, else the
   next bit of y.  A key prefix is a rectangle of the grid, and a bit more halves it across
   its longer side, so sorted keys are a k-d tree's leaf order.  The stream walks that tree
   depth first, 0 half first: a node holding cnt >= 2 Gaussians codes how many lie in its
   0 half (cgc_count_*), a node holding one codes the rest of its key as direct bits, and a
   leaf (all key bits fixed) holding several codes nothing: they share one position. */

/* Work is bounded by the input: a node's children split its count, so each level of the
   tree visits at most n nodes with a Gaussian, and the depth is bx + by <= 32.  A decoded
   count larger than its node's makes the stream invalid. */

/* The `count` (0..32) low bits of `key`, most significant first, as direct bits. */
static inline void cgc_key_encode_direct(cgc_rc_encoder *e, uint64_t key, int count)
{
    if (count > 16) {
        cgc_rc_encode_direct(e, (uint32_t)(key >> 16), count - 16);
        count = 16;
    }
    cgc_rc_encode_direct(e, (uint32_t)key & ((1u << count) - 1u), count);
}

static inline uint64_t cgc_key_decode_direct(cgc_rc_decoder *d, int count)
{
    uint64_t high = 0;
    if (count > 16) {
        high = (uint64_t)cgc_rc_decode_direct(d, count - 16) << 16;
        count = 16;
    }
    return high | cgc_rc_decode_direct(d, count);
}

/* keys[lo, hi) sorted, sharing their top `level` bits of `total_bits`. */
static void cgc_positions_encode_node(cgc_rc_encoder *e, cgc_count_models *m,
                                      const uint64_t *keys, size_t lo, size_t hi, int level,
                                      int total_bits)
{
    size_t cnt = hi - lo;
    if (cnt == 0 || level == total_bits)
        return;
    int rest = total_bits - level;
    if (cnt == 1) {
        cgc_key_encode_direct(e, keys[lo], rest);
        return;
    }
    uint64_t bit = (uint64_t)1 << (rest - 1);
    size_t a = lo, b = hi;  /* first key of [lo, hi) with `bit` set: binary search */
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (keys[mid] & bit)
            b = mid;
        else
            a = mid + 1;
    }
    cgc_count_encode(e, m, (uint32_t)(a - lo), (uint32_t)cnt);
    cgc_positions_encode_node(e, m, keys, lo, a, level + 1, total_bits);
    cgc_positions_encode_node(e, m, keys, a, hi, level + 1, total_bits);
}

/* Appends the keys of a node holding `cnt` Gaussians, whose top `level` bits are `prefix`,
   to keys[*filled ..]; the caller's counts guarantee they fit (sum = n). */
static int cgc_positions_decode_node(cgc_rc_decoder *d, cgc_count_models *m, uint64_t *keys,
                                     size_t *filled, uint64_t prefix, uint32_t cnt, int level,
                                     int total_bits)
{
    if (cnt == 0)
        return 0;
    int rest = total_bits - level;
    if (rest == 0) {
        for (uint32_t i = 0; i < cnt; i++)
            keys[(*filled)++] = prefix;
        return 0;
    }
    if (cnt == 1) {
        keys[(*filled)++] = (prefix << rest) | cgc_key_decode_direct(d, rest);
        return 0;
    }
    uint32_t k;
    int status = cgc_count_decode(d, m, cnt, &k);
    if (status)
        return status;
    status = cgc_positions_decode_node(d, m, keys, filled, prefix << 1, k, level + 1,
                                       total_bits);
    if (status)
        return status;
    return cgc_positions_decode_node(d, m, keys, filled, (prefix << 1) | 1u, cnt - k,
                                     level + 1, total_bits);
}

/* Codes n >= 1 sorted keys of total_bits (1..32) bits; the bytes go to *out (malloc'ed,
   the caller frees) and *out_size. */
static int cgc_positions_encode(const uint64_t *keys, size_t n, int total_bits,
                                uint8_t **out, size_t *out_size)
{
    if (n > CGC_MAX_POSITIONS)
        return CGC_STREAM_INVALID;
    cgc_count_models *m = (cgc_count_models *)malloc(sizeof(cgc_count_models));
    if (m == NULL)
        return CGC_STREAM_NO_MEMORY;
    cgc_count_models_init(m);
    cgc_rc_encoder e;
    cgc_rc_encoder_init(&e);
    cgc_positions_encode_node(&e, m, keys, 0, n, 0, total_bits);
    cgc_rc_encoder_flush(&e);
    free(m);
    if (e.failed) {
        free(e.out);
        return CGC_STREAM_NO_MEMORY;
    }
    *out = e.out;
    *out_size = e.size;
    return 0;
}

static int cgc_stream_end(const cgc_rc_decoder *d)
{
    return d->overrun == 0 && d->pos == d->size ? 0 : CGC_STREAM_INVALID;
}

/* Decodes n sorted keys into keys[0, n). */
static int cgc_positions_decode(const uint8_t *in, size_t size, size_t n, int total_bits,
                                uint64_t *keys)
{
    cgc_rc_decoder d;
    if (cgc_rc_decoder_init(&d, in, size))
        return CGC_STREAM_INVALID;
    cgc_count_models *m = (cgc_count_models *)malloc(sizeof(cgc_count_models));
    if (m == NULL)
        return CGC_STREAM_NO_MEMORY;
    cgc_count_models_init(m);
    size_t filled = 0;
    int status = n > CGC_MAX_POSITIONS ? CGC_STREAM_INVALID
        : cgc_positions_decode_node(&d, m, keys, &filled, 0, (uint32_t)n, 0, total_bits);
    free(m);
    if (status)
        return status;
    return cgc_stream_end(&d);
}

/* ---- attributes --------------------------------------------------------------------- */

/* Attributes are coded in key order, each code on its own: its top min(bits, 8) bits as a
   bit tree, then its lower bits with one model per bit position.  Models are chosen by a
   context in 0..3, the top two bits of another attribute's code of the same Gaussian
   (cgc_context), which the decoder has by then. */

/* The model context of a Gaussian: the top two bits of a code of `bits` (1..16) bits. */
static inline unsigned cgc_context(uint32_t code, int bits)
{
    return (unsigned)(((uint64_t)code << 2) >> bits) & (CGC_CONTEXTS - 1);
}

typedef struct {
    cgc_prob tree[CGC_CONTEXTS][1 << CGC_CODE_TREE_BITS];
    cgc_prob low[CGC_CONTEXTS][16 - CGC_CODE_TREE_BITS];
} cgc_attribute_models;

static inline void cgc_attribute_models_init(cgc_attribute_models *m)
{
    cgc_probs_init(&m->tree[0][0], sizeof(m->tree) / sizeof(cgc_prob));
    cgc_probs_init(&m->low[0][0], sizeof(m->low) / sizeof(cgc_prob));
}

/* codes[i] < 2^bits (bits 1..16); contexts[i] < CGC_CONTEXTS. */
static int cgc_attribute_encode(const uint32_t *codes, const uint8_t *contexts, size_t n,
                                int bits, uint8_t **out, size_t *out_size)
{
    cgc_attribute_models m;
    cgc_attribute_models_init(&m);
    cgc_rc_encoder e;
    cgc_rc_encoder_init(&e);
    for (size_t i = 0; i < n; i++)
        cgc_rc_encode_code(&e, m.tree[contexts[i]], m.low[contexts[i]], bits, codes[i]);
    cgc_rc_encoder_flush(&e);
    if (e.failed) {
        free(e.out);
        return CGC_STREAM_NO_MEMORY;
    }
    *out = e.out;
    *out_size = e.size;
    return 0;
}

/* One attribute's decoder: its range decoder, models and widths. */
typedef struct {
    cgc_rc_decoder rc;
    cgc_attribute_models models;
    int tree_bits, low_bits;
} cgc_attribute_decoder;

static int cgc_attribute_decoder_init(cgc_attribute_decoder *a, const uint8_t *in,
                                      size_t size, int bits)
{
    cgc_attribute_models_init(&a->models);
    a->tree_bits = cgc_code_tree_bits(bits);
    a->low_bits = bits - a->tree_bits;
    return cgc_rc_decoder_init(&a->rc, in, size) ? CGC_STREAM_INVALID : 0;
}

/* The low bits of a code whose tree gave `node`. */
static inline uint32_t cgc_attribute_low_bits(cgc_attribute_decoder *a, unsigned context,
                                              unsigned node)
{
    return cgc_rc_decode_low(&a->rc, a->models.low[context], node, a->tree_bits,
                             a->low_bits);
}

/* The top bits of a code, as a bit tree in `context`: returns the tree's final node. */
static inline unsigned cgc_attribute_tree(cgc_attribute_decoder *a, unsigned context)
{
    return cgc_rc_decode_tree(&a->rc, a->models.tree[context], a->tree_bits);
}

static int cgc_attribute_decode(const uint8_t *in, size_t size, const uint8_t *contexts,
                                size_t n, int bits, uint32_t *codes)
{
    cgc_attribute_decoder a;
    if (cgc_attribute_decoder_init(&a, in, size, bits))
        return CGC_STREAM_INVALID;
    for (size_t i = 0; i < n; i++) {
        codes[i] = cgc_attribute_low_bits(&a, contexts[i], cgc_attribute_tree(&a, contexts[i]));
        /* A corrupt stream can end early: stop at the first byte read past its end. */
        if (a.rc.overrun > 4)
            return CGC_STREAM_INVALID;
    }
    return cgc_stream_end(&a.rc);
}

/* An attribute coded in context 0 (codes_a), then two coded in its contexts (codes_b,
   codes_c): the groups l11 / l21 / l22 and Y / Co / Cg, which decode independently of each
   other and of the positions.  The three decoders run in one loop over the Gaussians, the
   two context-coded ones bit by bit in step: their chains of dependent arithmetic are
   independent of each other, and of the next Gaussian's code a, so the processor overlaps
   them.  Same result as cgc_attribute_decode on each stream. */
static int cgc_attribute_group_decode(const uint8_t *in_a, size_t size_a, int bits_a,
                                      const uint8_t *in_b, size_t size_b, int bits_b,
                                      const uint8_t *in_c, size_t size_c, int bits_c,
                                      size_t n, uint32_t *codes_a, uint32_t *codes_b,
                                      uint32_t *codes_c)
{
    cgc_attribute_decoder *group = (cgc_attribute_decoder *)malloc(
        3 * sizeof(cgc_attribute_decoder));
    if (group == NULL)
        return CGC_STREAM_NO_MEMORY;
    cgc_attribute_decoder *a = &group[0], *b = &group[1], *c = &group[2];
    int status = cgc_attribute_decoder_init(a, in_a, size_a, bits_a)
                 || cgc_attribute_decoder_init(b, in_b, size_b, bits_b)
                 || cgc_attribute_decoder_init(c, in_c, size_c, bits_c)
        ? CGC_STREAM_INVALID : 0;
    int common = b->tree_bits < c->tree_bits ? b->tree_bits : c->tree_bits;
    for (size_t i = 0; i < n && !status; i++) {
        codes_a[i] = cgc_attribute_low_bits(a, 0, cgc_attribute_tree(a, 0));
        unsigned context = cgc_context(codes_a[i], bits_a), node_b = 1, node_c = 1;
        int k;
        for (k = 0; k < common; k++) {
            node_b = 2 * node_b + cgc_rc_decode_bit(&b->rc, &b->models.tree[context][node_b]);
            node_c = 2 * node_c + cgc_rc_decode_bit(&c->rc, &c->models.tree[context][node_c]);
        }
        for (k = common; k < b->tree_bits; k++)
            node_b = 2 * node_b + cgc_rc_decode_bit(&b->rc, &b->models.tree[context][node_b]);
        for (k = common; k < c->tree_bits; k++)
            node_c = 2 * node_c + cgc_rc_decode_bit(&c->rc, &c->models.tree[context][node_c]);
        codes_b[i] = cgc_attribute_low_bits(b, context, node_b);
        codes_c[i] = cgc_attribute_low_bits(c, context, node_c);
        /* A corrupt stream can end early: stop at the first byte read past its end. */
        if (a->rc.overrun > 4 || b->rc.overrun > 4 || c->rc.overrun > 4)
            status = CGC_STREAM_INVALID;
    }
    for (int s = 0; s < 3 && !status; s++)
        status = cgc_stream_end(&group[s].rc);
    free(group);
    return status;
}

#endif
