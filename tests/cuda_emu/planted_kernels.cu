// Kernels for tests/test_cuda_emu.py: correct ones exercising the harness, and planted bugs
// (missing barriers, out-of-range writes, writes through const) it must make visible.
#define BLOCK 256

// Reverse each block's chunk through shared memory.
extern "C" __global__ void reverse(const int* in, int* out) {
    __shared__ int buf[BLOCK];
    const int t = threadIdx.x, base = blockIdx.x * BLOCK;
    buf[t] = in[base + t];
    __syncthreads();
    out[base + t] = buf[BLOCK - 1 - t];
}

// The planted bug: the same without the barrier.
extern "C" __global__ void reverse_no_sync(const int* in, int* out) {
    __shared__ int buf[BLOCK];
    const int t = threadIdx.x, base = blockIdx.x * BLOCK;
    buf[t] = in[base + t];
    out[base + t] = buf[BLOCK - 1 - t];
}

// Tree sum of each block's chunk in shared memory; with_sync = 0 drops the barriers.
extern "C" __global__ void block_sum(const int* in, int* out, int with_sync) {
    __shared__ int buf[BLOCK];
    const int t = threadIdx.x;
    buf[t] = in[blockIdx.x * BLOCK + t];
    if (with_sync) __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if (t < half) buf[t] += buf[t + half];
        if (with_sync) __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}

// Warp intrinsics: per lane, the warp sum by shuffles down (lane 0) and by butterfly (all
// lanes), lane 3's value, the ballot of odd values, and the values shifted up by one lane.
extern "C" __global__ void warp_ops(const float* in, float* down, float* butterfly,
                                    float* broadcast, unsigned* ballot, float* up) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const float x = in[t];
    float s = x;
    for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
    float b = x;
    for (int mask = 1; mask < 32; mask *= 2) b += __shfl_xor_sync(0xffffffffu, b, mask);
    down[t] = s;
    butterfly[t] = b;
    broadcast[t] = __shfl_sync(0xffffffffu, x, 3);
    ballot[t] = __ballot_sync(0xffffffffu, ((int)x) % 2 != 0);
    up[t] = __shfl_up_sync(0xffffffffu, x, 1);
}

// Every thread of a 3-D grid of 3-D blocks writes its global linear index.
extern "C" __global__ void indices(int* out) {
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const int per_block = blockDim.x * blockDim.y * blockDim.z;
    out[block * per_block + thread] = block * per_block + thread;
}

// Every thread adds its value into bins[t % 4].
extern "C" __global__ void histogram(const float* in, float* bins, int n) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) atomicAdd(bins + t % 4, in[t]);
}

// Writes out[offset] from thread 0: out of range for offset < 0 or >= the array length.
extern "C" __global__ void poke(float* out, long long offset) {
    if (threadIdx.x == 0) out[offset] = 1.0f;
}

// Writes through a pointer to const, which only a cast allows.
extern "C" __global__ void cheat(const float* in) {
    if (threadIdx.x == 0) const_cast<float*>(in)[0] = 1.0f;
}
