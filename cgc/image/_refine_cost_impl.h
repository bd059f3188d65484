/* cgc_move_cost's loop for one instruction set: included by _refine_cost.h once per
CGC_ISA (and CGC_TARGET).  Read the "read me first" note there. */

#define CGC_PASTE3(a, b, c) a##_##b##_##c
#define CGC_NAME3(a, b, c) CGC_PASTE3(a, b, c)
#ifdef CGC_NO_TARGET
#define CGC_FN_ATTR static
#else
#define CGC_FN_ATTR CGC_TARGET static
#endif

CGC_FN_ATTR double CGC_NAME3(cgc, move_cost, CGC_ISA)(const double *render,
                                                     const float *target,
                                                     const double *weights,
                                                     const float *old, const float *new_,
                                                     int height, int width) {
    const double x = new_[0], y = new_[1], l21 = new_[3];
    const double inv_l11 = 1.0 / new_[2], inv_l22 = 1.0 / new_[4];
    double lane_sum[CGC_LANES], total = 0.0;
    int a0, a1, b0, b1, c0, c1, d0, d1, i, lane;
    const int has_old = cgc_gaussian_box(old[0], old[1], old[2], old[3], old[4], width,
                                         height, &a0, &a1, &b0, &b1);
    const int has_new = cgc_gaussian_box(x, y, new_[2], l21, new_[4], width, height, &c0,
                                         &c1, &d0, &d1);
    const int64_t new_mask = -(int64_t)has_new, plane = (int64_t)height * width;
    if (!has_old && !has_new)
        return 0.0;
    if (!has_old) {
        a0 = c0;
        a1 = c1;
        b0 = d0;
        b1 = d1;
    }
    if (!has_new) {
        c0 = a0;
        c1 = a1;
        d0 = b0;
        d1 = b1;
    }
    if (c0 < a0) a0 = c0;
    if (c1 > a1) a1 = c1;
    if (d0 < b0) b0 = d0;
    if (d1 > b1) b1 = d1;
    for (lane = 0; lane < CGC_LANES; ++lane)
        lane_sum[lane] = 0.0;
    for (i = b0; i <= b1; ++i) {
        const int64_t row = (int64_t)i * width + a0;
        const double *s_row = render + row;
        const float *t_row = target + row;
        const double *w_row = weights + row;
        const int n = a1 - a0 + 1;
        int chunk;
        for (chunk = 0; chunk < (n + CGC_LANES - 1) / CGC_LANES; ++chunk) {
#pragma omp simd
            for (lane = 0; lane < CGC_LANES; ++lane) {
                const int k = chunk * CGC_LANES + lane;
                const int64_t live = -(int64_t)(k < n);
                const double w_new = cgc_keep_d(
                    cgc_refine_weight(x, y, inv_l11, l21, inv_l22, i, a0 + k), live & new_mask);
                const double w_old = cgc_keep_d(w_row[k], live);
                double cost = 0.0;
                int ch;
                for (ch = 0; ch < 3; ++ch) {
                    const double s = s_row[ch * plane + k];
                    const double t = (double)t_row[ch * plane + k];
                    const double moved = cgc_clip01_d(s + (new_[5 + ch] * w_new
                                                           - old[5 + ch] * w_old)) - t;
                    const double held = cgc_clip01_d(s) - t;
                    cost += moved * moved - held * held;
                }
                lane_sum[lane] += cost;
            }
        }
    }
    for (lane = 0; lane < CGC_LANES; ++lane)
        total += lane_sum[lane];
    return total;
}

#undef CGC_FN_ATTR
#undef CGC_NAME3
#undef CGC_PASTE3
