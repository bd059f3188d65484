// CUDA emulation on the CPU: enough of CUDA C++ for the kernels in cgc/kernels to compile
// with g++ and run under OpenMP.  See docs/cuda-emulation.md.
//
// Mapping:
//   * Blocks run one after another; the threads of a block are one OpenMP team of
//     blockDim.x * blockDim.y * blockDim.z threads, so barriers and races between threads of a
//     block are real.
//   * __shared__ is `static` in a section of its own: one instance shared by the team.
//     Because blocks never overlap in time, each block has it to itself, as on the GPU.  The
//     launcher fills the section with 0xff bytes (NaN as float, -1 as int) before each block,
//     so reading shared memory before writing it (a missing barrier) reads garbage, as on
//     the GPU, instead of a previous block's values.
//   * threadIdx, blockIdx, blockDim, gridDim are thread_local, set by the launcher.
//   * __syncthreads() is an OpenMP barrier of the team.
//   * Warp operations (shuffles, ballots, __syncwarp) exchange values through a per-lane slot
//     and a barrier of the 32 threads of the warp; warps are consecutive linear thread
//     ranks, as on the GPU.  All lanes of the warp must take part (full mask).
//   * Atomics go through std::atomic_ref.
// Limits: no dynamic shared memory, no dynamic parallelism, no cooperative groups, no
// textures or streams; blocks may communicate only through atomics on global memory.
#ifndef CGC_TESTS_CUDA_EMU_H
#define CGC_TESTS_CUDA_EMU_H

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include <omp.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Occupancy hints for ptxas mean nothing on the CPU.
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static __attribute__((section("cuda_emu_shared")))

// Bounds of the __shared__ section, defined by the linker; weak so a source without shared
// variables links too.
extern "C" char __start_cuda_emu_shared[] __attribute__((weak));
extern "C" char __stop_cuda_emu_shared[] __attribute__((weak));

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;
constexpr int warpSize = 32;

// Round-to-nearest arithmetic that CUDA never fuses; the emulation is compiled with
// -ffp-contract=off, so plain operators already round each step.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
// The fast intrinsics become their accurate counterparts.
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }
inline float __fdividef(float a, float b) { return a / b; }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

inline void __syncthreads() {
#pragma omp barrier
}

namespace cuda_emu {

// A thread cannot leave a block whose other threads wait at a barrier for it, so errors
// inside a kernel end the process, as __trap() ends the CUDA context.
[[noreturn]] inline void fatal(const char* message) {
    std::fprintf(stderr, "cuda_emu: %s\n", message);
    std::fflush(stderr);
    std::abort();
}

constexpr int MAX_THREADS = 1024;

// One warp's rendezvous: a generation-counting barrier, sleeping in the kernel (futex)
// rather than spinning, since a block has far more threads than the machine has cores.
struct WarpBarrier {
    std::atomic<int> arrived{0};
    std::atomic<int> generation{0};

    void wait(int lanes) {
        const int gen = generation.load(std::memory_order_acquire);
        if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == lanes) {
            arrived.store(0, std::memory_order_relaxed);
            generation.fetch_add(1, std::memory_order_acq_rel);
            generation.notify_all();
        } else {
            while (generation.load(std::memory_order_acquire) == gen) {
                generation.wait(gen, std::memory_order_acquire);
            }
        }
    }
};

// Shared by the team of the running block; blocks run one at a time.  Warp exchanges
// alternate between two slot arrays: a lane can only write a slot array again after the
// barrier of the following exchange, which every lane reaches only once it has read, so one
// barrier per exchange suffices.
inline WarpBarrier warp_barrier[MAX_THREADS / 32];
inline std::uint64_t warp_slot[2][MAX_THREADS];
inline thread_local int slot_parity;
inline thread_local int thread_rank;
inline thread_local int thread_count;

inline int lanes_of_my_warp() {
    const int base = thread_rank & ~31;
    return thread_count - base < 32 ? thread_count - base : 32;
}

inline void check_mask(unsigned mask) {
    const int lanes = lanes_of_my_warp();
    const unsigned all = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    if (mask != 0xffffffffu && mask != all) {
        fatal("warp operations need a full-warp mask");
    }
}

inline void sync_warp() { warp_barrier[thread_rank / 32].wait(lanes_of_my_warp()); }

// Publish bits for this lane and return the warp's slot array once every lane has published.
inline const std::uint64_t* publish(std::uint64_t bits) {
    std::uint64_t* slots = warp_slot[slot_parity];
    slot_parity ^= 1;
    slots[thread_rank] = bits;
    sync_warp();
    return slots + (thread_rank & ~31);
}

// Return lane `src`'s value (own value if src is outside the warp).
template <class T>
T exchange(T value, int src) {
    static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable_v<T>);
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    const std::uint64_t* lanes = publish(bits);
    T result = value;
    if (src >= 0 && src < lanes_of_my_warp()) {
        std::memcpy(&result, &lanes[src], sizeof(T));
    }
    return result;
}

}  // namespace cuda_emu

[[noreturn]] inline void __trap() { cuda_emu::fatal("__trap() called"); }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    cuda_emu::check_mask(mask);
    cuda_emu::sync_warp();
}

template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
    cuda_emu::check_mask(mask);
    const int lane = cuda_emu::thread_rank & 31;
    return cuda_emu::exchange(value, (lane & ~(width - 1)) + (src_lane % width));
}

template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    cuda_emu::check_mask(mask);
    const int lane = cuda_emu::thread_rank & 31;
    const int src = lane + (int)delta;
    return cuda_emu::exchange(value, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : -1);
}

template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    cuda_emu::check_mask(mask);
    const int lane = cuda_emu::thread_rank & 31;
    const int src = lane - (int)delta;
    return cuda_emu::exchange(value, src >= (lane & ~(width - 1)) ? src : -1);
}

template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    cuda_emu::check_mask(mask);
    const int lane = cuda_emu::thread_rank & 31;
    const int src = lane ^ lane_mask;
    return cuda_emu::exchange(value, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : -1);
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    cuda_emu::check_mask(mask);
    const std::uint64_t* lanes = cuda_emu::publish(predicate != 0);
    unsigned bits = 0;
    for (int lane = 0; lane < cuda_emu::lanes_of_my_warp(); ++lane) {
        bits |= (lanes[lane] != 0 ? 1u : 0u) << lane;
    }
    return bits;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }

inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }

inline int __all_sync(unsigned mask, int predicate) {
    const int lanes = cuda_emu::lanes_of_my_warp();
    const unsigned all = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    return __ballot_sync(mask, predicate) == all;
}

template <class T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

template <class T>
T atomicSub(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_sub(value);
}

template <class T>
T atomicExch(T* address, T value) {
    return std::atomic_ref<T>(*address).exchange(value);
}

template <class T>
T atomicCAS(T* address, T compare, T value) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
    return compare;
}

template <class T>
T atomicMax(T* address, T value) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}

template <class T>
T atomicMin(T* address, T value) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (value < old && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}

namespace cuda_emu {

template <class... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

// Run kernel over the grid; dims = grid x, y, z, block x, y, z.  args[k] points at the value
// of parameter k, as in cuLaunchKernel.  Returns 0, or 1 for an invalid configuration.
template <class... A>
int launch(void (*kernel)(A...), const unsigned* dims, void** args) {
    const dim3 grid(dims[0], dims[1], dims[2]);
    const dim3 block(dims[3], dims[4], dims[5]);
    const long long team = (long long)block.x * block.y * block.z;
    if (team < 1 || team > MAX_THREADS || grid.x < 1 || grid.y < 1 || grid.z < 1) {
        return 1;
    }
    omp_set_dynamic(0);
    omp_set_max_active_levels(1);
    for (unsigned bz = 0; bz < grid.z; ++bz) {
        for (unsigned by = 0; by < grid.y; ++by) {
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                if (__start_cuda_emu_shared != nullptr) {
                    std::memset(__start_cuda_emu_shared, 0xff,
                                __stop_cuda_emu_shared - __start_cuda_emu_shared);
                }
#pragma omp parallel num_threads((int)team)
                {
                    if (omp_get_num_threads() != team) {
                        fatal("OpenMP gave fewer threads than the block needs");
                    }
                    const unsigned rank = (unsigned)omp_get_thread_num();
                    thread_rank = (int)rank;
                    slot_parity = 0;
                    thread_count = (int)team;
                    threadIdx = uint3{rank % block.x, (rank / block.x) % block.y,
                                      rank / (block.x * block.y)};
                    blockIdx = uint3{bx, by, bz};
                    blockDim = block;
                    gridDim = grid;
                    call(kernel, args, std::index_sequence_for<A...>{});
                }
            }
        }
    }
    return 0;
}

// Type code of one kernel parameter for the Python side: numpy dtype string, "*" for a
// pointer, leading "const " for a pointer to const.
template <class T>
struct Code;
template <> struct Code<bool> { static std::string get() { return "b1"; } };
template <> struct Code<char> { static std::string get() { return "i1"; } };
template <> struct Code<signed char> { static std::string get() { return "i1"; } };
template <> struct Code<unsigned char> { static std::string get() { return "u1"; } };
template <> struct Code<short> { static std::string get() { return "i2"; } };
template <> struct Code<unsigned short> { static std::string get() { return "u2"; } };
template <> struct Code<int> { static std::string get() { return "i4"; } };
template <> struct Code<unsigned> { static std::string get() { return "u4"; } };
template <> struct Code<long> { static std::string get() { return "i8"; } };
template <> struct Code<unsigned long> { static std::string get() { return "u8"; } };
template <> struct Code<long long> { static std::string get() { return "i8"; } };
template <> struct Code<unsigned long long> { static std::string get() { return "u8"; } };
template <> struct Code<float> { static std::string get() { return "f4"; } };
template <> struct Code<double> { static std::string get() { return "f8"; } };
template <class T>
struct Code<T*> {
    static std::string get() {
        return (std::is_const_v<T> ? "const " : "") + Code<std::remove_cv_t<T>>::get() + "*";
    }
};

template <class... A>
std::string signature(void (*)(A...)) {
    std::string out;
    ((out += Code<std::remove_cv_t<A>>::get() + ","), ...);
    return out;
}

}  // namespace cuda_emu

#endif  // CGC_TESTS_CUDA_EMU_H
