/* The tile loops of render_tile.h for one precision and instruction set: included by
render_tile_isa.h once per (CGC_REAL, CGC_WEIGHT, CGC_CLAMP_Q, CGC_KEEP, CGC_MASK), which
it defines before and this file undefines after; CGC_ISA and CGC_TARGET (or CGC_NO_TARGET)
come from render_tile.h.  Read the "read me first" note of render_tile.h. */

#define CGC_PASTE4(a, b, c, d) a##_##b##_##c##_##d
#define CGC_NAME4(a, b, c, d) CGC_PASTE4(a, b, c, d)
#define CGC_FN(name) CGC_NAME4(cgc, name, CGC_REAL, CGC_ISA)
#ifdef CGC_NO_TARGET
#define CGC_FN_ATTR static
#else
#define CGC_FN_ATTR CGC_TARGET static
#endif

/* The box of the Gaussian gp clipped to the tile [ti0, ti0 + rows) x [tj0, tj0 + cols),
   and its span shape; 0 when it draws nothing there. */
CGC_FN_ATTR int CGC_FN(box_in_tile)(const CGC_REAL *gp, int ti0, int tj0, int rows, int cols,
                                    int width, int height, int *j0, int *j1, int *i0,
                                    int *i1, cgc_span_shape *shape) {
    if (!cgc_gaussian_box(gp[0], gp[1], gp[2], gp[3], gp[4], width, height, j0, j1, i0, i1))
        return 0;
    *shape = cgc_span_shape_of(gp[2], gp[3], gp[4]);
    if (*i0 < ti0) *i0 = ti0;
    if (*i1 > ti0 + rows - 1) *i1 = ti0 + rows - 1;
    if (*j0 < tj0) *j0 = tj0;
    if (*j1 > tj0 + cols - 1) *j1 = tj0 + cols - 1;
    return 1;
}

/* One lane of a row piece: u, v of column j on the row at offset dy from the centre, the
   weight of the clamped q, and the mask that keeps the lane's terms (q <= CGC_CUTOFF_Q and
   the lane is live).  Returns the weight. */
static inline CGC_REAL CGC_FN(lane_weight)(CGC_REAL x, CGC_REAL dy, CGC_REAL inv_l11,
                                           CGC_REAL l21, CGC_REAL inv_l22, int j, int live,
                                           CGC_REAL *u, CGC_REAL *v, CGC_MASK *keep) {
    const CGC_REAL uu = (((CGC_REAL)j + (CGC_REAL)0.5) - x) * inv_l11;
    const CGC_REAL vv = (dy - l21 * uu) * inv_l22;
    const CGC_REAL q = uu * uu + vv * vv;
    *u = uu;
    *v = vv;
    *keep = -(CGC_MASK)((q <= (CGC_REAL)CGC_CUTOFF_Q) & live);
    return CGC_WEIGHT(CGC_CLAMP_Q(q));
}

/* Adds one tile's terms to acc, four planes (r, g, b, weight) of rows x cols values for
   the tile [ti0, ti0 + rows) x [tj0, tj0 + cols), zeroed by the caller. */
CGC_FN_ATTR void CGC_FN(tile_forward)(const CGC_REAL *params, const int32_t *pairs,
                                      int64_t p0, int64_t p1, int ti0, int tj0, int rows,
                                      int cols, int width, int height, CGC_REAL *acc) {
    const int64_t plane = (int64_t)rows * cols;
    int64_t p;
    for (p = p0; p < p1; ++p) {
        const CGC_REAL *gp = params + 8 * (int64_t)pairs[p];
        const CGC_REAL x = gp[0], y = gp[1], l21 = gp[3];
        const CGC_REAL inv_l11 = (CGC_REAL)1 / gp[2], inv_l22 = (CGC_REAL)1 / gp[4];
        const CGC_REAL cr = gp[5], cg = gp[6], cb = gp[7];
        int j0, j1, i0, i1, i;
        cgc_span_shape shape;
        if (!CGC_FN(box_in_tile)(gp, ti0, tj0, rows, cols, width, height, &j0, &j1, &i0, &i1,
                                 &shape))
            continue;
        for (i = i0; i <= i1; ++i) {
            const CGC_REAL dy = ((CGC_REAL)i + (CGC_REAL)0.5) - y;
            CGC_REAL *ar, *ag, *ab, *aw;
            int rj0, rj1, n, chunk, lane;
            cgc_row_span(x, dy, &shape, j0, j1, &rj0, &rj1);
            n = rj1 - rj0 + 1;
            ar = acc + (int64_t)(i - ti0) * cols + (rj0 - tj0);
            ag = ar + plane;
            ab = ar + 2 * plane;
            aw = ar + 3 * plane;
            for (chunk = 0; chunk < (n + CGC_LANES - 1) / CGC_LANES; ++chunk) {
#pragma omp simd
                for (lane = 0; lane < CGC_LANES; ++lane) {
                    const int k = chunk * CGC_LANES + lane;
                    CGC_REAL u, v;
                    CGC_MASK keep;
                    const CGC_REAL w = CGC_FN(lane_weight)(x, dy, inv_l11, l21, inv_l22,
                                                           rj0 + k, k < n, &u, &v, &keep);
                    const CGC_REAL tr = cr * w, tg = cg * w, tb = cb * w;
                    ar[k] += CGC_KEEP(tr, keep);
                    ag[k] += CGC_KEEP(tg, keep);
                    ab[k] += CGC_KEEP(tb, keep);
                    aw[k] += CGC_KEEP(w, keep);
                }
            }
        }
    }
}

CGC_FN_ATTR int CGC_FN(forward)(const CGC_REAL *params, int height, int width, int tile,
                                const int64_t *tile_start, int64_t n_tiles,
                                const int32_t *pairs, CGC_REAL *out, CGC_REAL *weight,
                                int threads) {
    const int tiles_x = (width + tile - 1) / tile;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        CGC_REAL *acc =
            (CGC_REAL *)cgc_tile_scratch(4, sizeof(CGC_REAL), tile, height, width);
        int64_t t;
        if (acc == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (t = 0; t < n_tiles; ++t) {
            int ti0, tj0, rows, cols, r, c;
            int64_t plane;
            cgc_tile_rect(t, tiles_x, tile, height, width, &ti0, &tj0, &rows, &cols);
            plane = (int64_t)rows * cols;
            if (acc == NULL)
                continue;
            memset(acc, 0, sizeof(CGC_REAL) * 4 * (size_t)plane);
            CGC_FN(tile_forward)(params, pairs, tile_start[t], tile_start[t + 1], ti0, tj0,
                                 rows, cols, width, height, acc);
            for (r = 0; r < rows; ++r) {
                const CGC_REAL *src = acc + (int64_t)r * cols;
                CGC_REAL *dst = out + ((int64_t)(ti0 + r) * width + tj0) * 3;
                for (c = 0; c < cols; ++c) {
                    dst[3 * c] = src[c];
                    dst[3 * c + 1] = src[plane + c];
                    dst[3 * c + 2] = src[2 * plane + c];
                }
                if (weight != NULL)
                    memcpy(weight + (int64_t)(ti0 + r) * width + tj0, src + 3 * plane,
                           sizeof(CGC_REAL) * cols);
            }
        }
        free(acc);
    }
    return failed ? -1 : 0;
}

/* Writes pair_grad[8 p .. 8 p + 7] for the tile's pairs p0 <= p < p1, given dL/dimage of
   the tile as three planes (r, g, b) of rows x cols values. */
CGC_FN_ATTR void CGC_FN(tile_backward)(const CGC_REAL *params, const int32_t *pairs,
                                       int64_t p0, int64_t p1, int ti0, int tj0, int rows,
                                       int cols, int width, int height,
                                       const CGC_REAL *grad, double *pair_grad) {
    const int64_t plane = (int64_t)rows * cols;
    int64_t p;
    for (p = p0; p < p1; ++p) {
        const CGC_REAL *gp = params + 8 * (int64_t)pairs[p];
        const CGC_REAL x = gp[0], y = gp[1], l21 = gp[3];
        const CGC_REAL inv_l11 = (CGC_REAL)1 / gp[2], inv_l22 = (CGC_REAL)1 / gp[4];
        const CGC_REAL shear = l21 * inv_l22;
        const CGC_REAL cr = gp[5], cg = gp[6], cb = gp[7];
        /* With s = w <dL/dpixel, colour>, dL/dq = -s / 2.  The sums are of
           e = s (u - v l21 / l22) (s times half of dq/du, through u directly and through
           v), f = s v, and the colour terms, one per lane over the pair's pixels; constant
           factors come out after the loops. */
        CGC_REAL e[CGC_LANES], eu[CGC_LANES], f[CGC_LANES], fu[CGC_LANES], fv[CGC_LANES];
        CGC_REAL sr[CGC_LANES], sg[CGC_LANES], sb[CGC_LANES];
        double sum_e = 0, sum_eu = 0, sum_f = 0, sum_fu = 0, sum_fv = 0;
        double sum_r = 0, sum_g = 0, sum_b = 0;
        double *out = pair_grad + 8 * p;
        int j0, j1, i0, i1, i, lane;
        for (lane = 0; lane < CGC_LANES; ++lane)
            e[lane] = eu[lane] = f[lane] = fu[lane] = fv[lane] = sr[lane] = sg[lane] =
                sb[lane] = 0;
        cgc_span_shape shape;
        if (!CGC_FN(box_in_tile)(gp, ti0, tj0, rows, cols, width, height, &j0, &j1, &i0, &i1,
                                 &shape)) {
            i0 = 1;
            i1 = 0;
        }
        for (i = i0; i <= i1; ++i) {
            const CGC_REAL dy = ((CGC_REAL)i + (CGC_REAL)0.5) - y;
            const CGC_REAL *gr_row, *gg_row, *gb_row;
            int rj0, rj1, n, chunk;
            cgc_row_span(x, dy, &shape, j0, j1, &rj0, &rj1);
            n = rj1 - rj0 + 1;
            gr_row = grad + (int64_t)(i - ti0) * cols + (rj0 - tj0);
            gg_row = gr_row + plane;
            gb_row = gr_row + 2 * plane;
            for (chunk = 0; chunk < (n + CGC_LANES - 1) / CGC_LANES; ++chunk) {
#pragma omp simd
                for (lane = 0; lane < CGC_LANES; ++lane) {
                    const int k = chunk * CGC_LANES + lane;
                    CGC_REAL u, v;
                    CGC_MASK keep;
                    const CGC_REAL w = CGC_FN(lane_weight)(x, dy, inv_l11, l21, inv_l22,
                                                           rj0 + k, k < n, &u, &v, &keep);
                    const CGC_REAL gr = gr_row[k], gg = gg_row[k], gb = gb_row[k];
                    const CGC_REAL s = w * (gr * cr + gg * cg + gb * cb);
                    const CGC_REAL se = s * (u - v * shear), sf = s * v;
                    const CGC_REAL seu = se * u, sfu = sf * u, sfv = sf * v;
                    const CGC_REAL tr = gr * w, tg = gg * w, tb = gb * w;
                    /* Masked rather than multiplied by 0, so that the infinite u and v
                       of a degenerate Gaussian's far pixels cannot make NaNs. */
                    e[lane] += CGC_KEEP(se, keep);
                    eu[lane] += CGC_KEEP(seu, keep);
                    f[lane] += CGC_KEEP(sf, keep);
                    fu[lane] += CGC_KEEP(sfu, keep);
                    fv[lane] += CGC_KEEP(sfv, keep);
                    sr[lane] += CGC_KEEP(tr, keep);
                    sg[lane] += CGC_KEEP(tg, keep);
                    sb[lane] += CGC_KEEP(tb, keep);
                }
            }
        }
        for (lane = 0; lane < CGC_LANES; ++lane) {
            sum_e += e[lane];
            sum_eu += eu[lane];
            sum_f += f[lane];
            sum_fu += fu[lane];
            sum_fv += fv[lane];
            sum_r += sr[lane];
            sum_g += sg[lane];
            sum_b += sb[lane];
        }
        /* q's derivatives times dL/dq = -s / 2: dL/dx = sum e / l11, dL/dl11 = sum e u / l11,
           dL/dy = sum f / l22, dL/dl21 = sum f u / l22, dL/dl22 = sum f v / l22. */
        out[0] = sum_e * (double)inv_l11;
        out[1] = sum_f * (double)inv_l22;
        out[2] = sum_eu * (double)inv_l11;
        out[3] = sum_fu * (double)inv_l22;
        out[4] = sum_fv * (double)inv_l22;
        out[5] = sum_r;
        out[6] = sum_g;
        out[7] = sum_b;
    }
}

CGC_FN_ATTR int CGC_FN(backward)(const CGC_REAL *params, int height, int width, int tile,
                                 const int64_t *tile_start, int64_t n_tiles,
                                 const int32_t *pairs, const CGC_REAL *grad_image,
                                 double *pair_grad, int threads) {
    const int tiles_x = (width + tile - 1) / tile;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        CGC_REAL *grad =
            (CGC_REAL *)cgc_tile_scratch(3, sizeof(CGC_REAL), tile, height, width);
        int64_t t;
        if (grad == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (t = 0; t < n_tiles; ++t) {
            int ti0, tj0, rows, cols, r, c;
            int64_t plane;
            cgc_tile_rect(t, tiles_x, tile, height, width, &ti0, &tj0, &rows, &cols);
            plane = (int64_t)rows * cols;
            if (grad == NULL || tile_start[t] == tile_start[t + 1])
                continue;
            for (r = 0; r < rows; ++r) {
                const CGC_REAL *src = grad_image + ((int64_t)(ti0 + r) * width + tj0) * 3;
                CGC_REAL *dst = grad + (int64_t)r * cols;
                for (c = 0; c < cols; ++c) {
                    dst[c] = src[3 * c];
                    dst[plane + c] = src[3 * c + 1];
                    dst[2 * plane + c] = src[3 * c + 2];
                }
            }
            CGC_FN(tile_backward)(params, pairs, tile_start[t], tile_start[t + 1], ti0, tj0,
                                  rows, cols, width, height, grad, pair_grad);
        }
        free(grad);
    }
    return failed ? -1 : 0;
}

#undef CGC_FN_ATTR
#undef CGC_FN
#undef CGC_NAME4
#undef CGC_PASTE4
#undef CGC_REAL
#undef CGC_WEIGHT
#undef CGC_CLAMP_Q
#undef CGC_KEEP
#undef CGC_MASK
