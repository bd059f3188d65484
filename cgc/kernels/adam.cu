// Fused Adam step and covariance clamping on the GPU, mirroring cgc/_core.pyx.
//
// One thread per Gaussian (row of the packed (N, 8) arrays), 1-D blocks.  Arithmetic is in
// double like the reference, with float32 storage: the kernel is bound by memory traffic, and
// matching the reference's rounding keeps both on the same side of the clamping bounds.

#include "common.cuh"

// One bias-corrected Adam step with a learning rate per column, then clamping of the centre
// into [min_x, max_x] x [min_y, max_y] and of the covariance eigenvalues into
// [min_var, max_var]; updates params, m and v in place.
// In:  lr (8,) float64; corr1 = 1 - beta1^step, corr2 = 1 - beta2^step (step counts from 1).
extern "C" __global__ void adam_step(float* __restrict__ params, const float* __restrict__ grads,
                                     float* __restrict__ m, float* __restrict__ v,
                                     const double* __restrict__ lr, int n, double beta1,
                                     double beta2, double eps, double corr1, double corr2,
                                     double min_var, double max_var, double min_x,
                                     double max_x, double min_y, double max_y) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) {
        return;
    }
    const long long row = (long long)g * 8;
    for (int k = 0; k < 8; ++k) {
        const double grad = grads[row + k];
        const double m_new = beta1 * m[row + k] + (1.0 - beta1) * grad;
        const double v_new = beta2 * v[row + k] + (1.0 - beta2) * grad * grad;
        m[row + k] = (float)m_new;
        v[row + k] = (float)v_new;
        params[row + k] =
            (float)(params[row + k] - lr[k] * (m_new / corr1) / (sqrt(v_new / corr2) + eps));
    }
    params[row] = cgc::clamp_centre(params[row], min_x, max_x);
    params[row + 1] = cgc::clamp_centre(params[row + 1], min_y, max_y);
    cgc::clamp_cholesky(params + row, min_var, max_var);
}

// Clamp every covariance's eigenvalues into [min_var, max_var], in place.
extern "C" __global__ void clamp_scales(float* __restrict__ params, int n, double min_var,
                                        double max_var) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) {
        return;
    }
    cgc::clamp_cholesky(params + (long long)g * 8, min_var, max_var);
}
