/* Adaptive binary range coder of .cgc version 3 streams (docs/format.md, "Range coder").

Read me first: the coder of LZMA, a 32-bit range and a 64-bit low with a carry cache on the
encoder side, a 32-bit range and code on the decoder side.  Each binary decision has a
probability `p` of a 0, in units of 2^-CGC_RC_PROB_BITS, split off the top of the range as
bound = (range >> CGC_RC_PROB_BITS) * p.  Direct bits (probability one half, no model)
halve the range. */
#ifndef CGC_RANGE_CODER_H
#define CGC_RANGE_CODER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Models adapt after every decision by 1/32 of the distance to the outcome
   (CGC_RC_ADAPT_SHIFT); p starts at one half and stays within [31, 4065] of 4096, so it is
   never 0 or 1 and bound is never 0 or the whole range.  Invariant after every step:
   range >= 2^24 (CGC_RC_TOP), renormalised one byte at a time. */
#define CGC_RC_PROB_BITS 12
#define CGC_RC_PROB_HALF (1u << (CGC_RC_PROB_BITS - 1))
#define CGC_RC_ADAPT_SHIFT 5
#define CGC_RC_TOP (1u << 24)

typedef uint16_t cgc_prob;

static inline void cgc_probs_init(cgc_prob *probs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        probs[i] = CGC_RC_PROB_HALF;
}

/* ---- encoder ------------------------------------------------------------------------ */

typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t cache_size;  /* bytes held back: the cache and the 0xFF bytes after it */
    uint8_t *out;
    size_t size, capacity;
    int failed;           /* an allocation failed: the output is lost */
} cgc_rc_encoder;

static inline void cgc_rc_encoder_init(cgc_rc_encoder *e)
{
    e->low = 0;
    e->range = 0xFFFFFFFFu;
    e->cache = 0;
    e->cache_size = 1;
    e->out = NULL;
    e->size = e->capacity = 0;
    e->failed = 0;
}

static inline void cgc_rc_put(cgc_rc_encoder *e, uint8_t byte)
{
    if (e->size == e->capacity) {
        size_t capacity = e->capacity ? 2 * e->capacity : 256;
        uint8_t *grown = (uint8_t *)realloc(e->out, capacity);
        if (grown == NULL) {
            e->failed = 1;
            return;
        }
        e->out = grown;
        e->capacity = capacity;
    }
    if (!e->failed)
        e->out[e->size++] = byte;
}

/* Emits the byte held in the cache once a carry into it can no longer happen. */
static inline void cgc_rc_shift_low(cgc_rc_encoder *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t held = e->cache;
        do {
            cgc_rc_put(e, (uint8_t)(held + carry));
            held = 0xFF;
        } while (--e->cache_size != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->cache_size++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void cgc_rc_encode_bit(cgc_rc_encoder *e, cgc_prob *p, unsigned bit)
{
    uint32_t bound = (e->range >> CGC_RC_PROB_BITS) * *p;
    if (!bit) {
        e->range = bound;
        *p += ((1u << CGC_RC_PROB_BITS) - *p) >> CGC_RC_ADAPT_SHIFT;
    } else {
        e->low += bound;
        e->range -= bound;
        *p -= *p >> CGC_RC_ADAPT_SHIFT;
    }
    while (e->range < CGC_RC_TOP) {
        e->range <<= 8;
        cgc_rc_shift_low(e);
    }
}

/* The `count` (0..32) low bits of `value`, most significant first, each at one half. */
static inline void cgc_rc_encode_direct(cgc_rc_encoder *e, uint32_t value, int count)
{
    while (count-- > 0) {
        e->range >>= 1;
        if ((value >> count) & 1u)
            e->low += e->range;
        while (e->range < CGC_RC_TOP) {
            e->range <<= 8;
            cgc_rc_shift_low(e);
        }
    }
}

static inline void cgc_rc_encoder_flush(cgc_rc_encoder *e)
{
    for (int i = 0; i < 5; i++)
        cgc_rc_shift_low(e);
}

/* ---- decoder ------------------------------------------------------------------------ */

/* The decoder consumes exactly the bytes the encoder wrote, its first byte always 0.  A
   decoder that runs past its input reads zeros and counts them in `overrun`; callers turn
   any overrun, and any byte left unread, into a format error. */

typedef struct {
    uint32_t range, code;
    const uint8_t *in;
    size_t size, pos;
    size_t overrun;  /* bytes read past the end of the input (as zeros) */
} cgc_rc_decoder;

static inline uint8_t cgc_rc_next(cgc_rc_decoder *d)
{
    if (d->pos < d->size)
        return d->in[d->pos++];
    d->overrun++;
    return 0;
}

/* Returns 0, or -1 when the stream does not start with the encoder's leading 0 byte. */
static inline int cgc_rc_decoder_init(cgc_rc_decoder *d, const uint8_t *in, size_t size)
{
    d->in = in;
    d->size = size;
    d->pos = 0;
    d->overrun = 0;
    d->range = 0xFFFFFFFFu;
    d->code = 0;
    if (cgc_rc_next(d) != 0)
        return -1;
    for (int i = 0; i < 4; i++)
        d->code = (d->code << 8) | cgc_rc_next(d);
    return 0;
}

static inline unsigned cgc_rc_decode_bit(cgc_rc_decoder *d, cgc_prob *p)
{
    uint32_t bound = (d->range >> CGC_RC_PROB_BITS) * *p;
    unsigned bit;
    if (d->code < bound) {
        d->range = bound;
        *p += ((1u << CGC_RC_PROB_BITS) - *p) >> CGC_RC_ADAPT_SHIFT;
        bit = 0;
    } else {
        d->code -= bound;
        d->range -= bound;
        *p -= *p >> CGC_RC_ADAPT_SHIFT;
        bit = 1;
    }
    while (d->range < CGC_RC_TOP) {
        d->range <<= 8;
        d->code = (d->code << 8) | cgc_rc_next(d);
    }
    return bit;
}

static inline uint32_t cgc_rc_decode_direct(cgc_rc_decoder *d, int count)
{
    uint32_t value = 0;
    while (count-- > 0) {
        d->range >>= 1;
        uint32_t bit = d->code >= d->range;
        if (bit)
            d->code -= d->range;
        value = (value << 1) | bit;
        while (d->range < CGC_RC_TOP) {
            d->range <<= 8;
            d->code = (d->code << 8) | cgc_rc_next(d);
        }
    }
    return value;
}

/* ---- codes of 1 to 16 bits ------------------------------------------------------------ */

/* A code's top min(bits, CGC_CODE_TREE_BITS) bits as a bit tree over the models
   tree[1 .. 2^tree_bits), then its lower bits with one model per position, low[b]: how the
   image streams code an attribute and the video P-frames a delta. */
#define CGC_CODE_TREE_BITS 8

static inline int cgc_code_tree_bits(int bits)
{
    return bits < CGC_CODE_TREE_BITS ? bits : CGC_CODE_TREE_BITS;
}

static inline void cgc_rc_encode_code(cgc_rc_encoder *e, cgc_prob *tree, cgc_prob *low,
                                      int bits, uint32_t code)
{
    int tree_bits = cgc_code_tree_bits(bits), low_bits = bits - tree_bits;
    uint32_t high = code >> low_bits;
    unsigned node = 1;
    for (int b = tree_bits - 1; b >= 0; b--) {
        unsigned bit = (high >> b) & 1u;
        cgc_rc_encode_bit(e, &tree[node], bit);
        node = 2 * node + bit;
    }
    for (int b = low_bits - 1; b >= 0; b--)
        cgc_rc_encode_bit(e, &low[b], (code >> b) & 1u);
}

/* The final node of a code's bit tree of tree_bits bits. */
static inline unsigned cgc_rc_decode_tree(cgc_rc_decoder *d, cgc_prob *tree, int tree_bits)
{
    unsigned node = 1;
    for (int k = 0; k < tree_bits; k++)
        node = 2 * node + cgc_rc_decode_bit(d, &tree[node]);
    return node;
}

/* The code whose bit tree of tree_bits bits ended at `node`, with its low_bits lower bits. */
static inline uint32_t cgc_rc_decode_low(cgc_rc_decoder *d, cgc_prob *low, unsigned node,
                                         int tree_bits, int low_bits)
{
    uint32_t code = node - (1u << tree_bits);
    for (int b = low_bits - 1; b >= 0; b--)
        code = (code << 1) | cgc_rc_decode_bit(d, &low[b]);
    return code;
}

static inline uint32_t cgc_rc_decode_code(cgc_rc_decoder *d, cgc_prob *tree, cgc_prob *low,
                                          int bits)
{
    int tree_bits = cgc_code_tree_bits(bits);
    return cgc_rc_decode_low(d, low, cgc_rc_decode_tree(d, tree, tree_bits), tree_bits,
                             bits - tree_bits);
}

#endif
