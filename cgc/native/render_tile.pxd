# Cython view of render_tile.h, the tiled renderer's C loops (the CPU reference renderer in
# cgc/_core.pyx and the refinement's cost loops in cgc/image/_refine_cy.pyx).
cimport numpy as np

cdef extern from "render_tile.h" nogil:
    double CUTOFF_Q "CGC_CUTOFF_Q"
    bint _gaussian_box "cgc_gaussian_box"(double x, double y, double l11, double l21,
                                          double l22, int width, int height, int *j0,
                                          int *j1, int *i0, int *i1)
    double _weight "cgc_weight_d"(double q)
    float _weight_f "cgc_weight_f"(float q)
    int _render_init "cgc_render_init"(int use_avx2)
    int _forward_f "cgc_render_forward_f"(const float *params, int height, int width,
                                          int tile, const np.int64_t *tile_start,
                                          np.int64_t n_tiles, const np.int32_t *pairs,
                                          float *out, float *weight, int threads)
    int _forward_d "cgc_render_forward_d"(const double *params, int height, int width,
                                          int tile, const np.int64_t *tile_start,
                                          np.int64_t n_tiles, const np.int32_t *pairs,
                                          double *out, double *weight, int threads)
    int _backward_f "cgc_render_backward_f"(const float *params, int height, int width,
                                            int tile, const np.int64_t *tile_start,
                                            np.int64_t n_tiles, const np.int32_t *pairs,
                                            const float *grad_image, double *pair_grad,
                                            int threads)
    int _backward_d "cgc_render_backward_d"(const double *params, int height, int width,
                                            int tile, const np.int64_t *tile_start,
                                            np.int64_t n_tiles, const np.int32_t *pairs,
                                            const double *grad_image, double *pair_grad,
                                            int threads)
