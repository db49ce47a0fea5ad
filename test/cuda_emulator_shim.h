// Host shim that lets g++ compile and run CUDA C kernels rendered by codegen/cuda.py, for the CPU emulation
// of CUDA launches in test/cuda_emulator.py. Not a CUDA implementation: exactly what the renderer emits.
//
// Semantics kept from CUDA:
// - a grid of blocks of threads, with blockIdx/threadIdx/blockDim/gridDim;
// - __syncthreads() is a real barrier: each thread of a block is a fiber (ucontext) with its own stack, run
//   until it reaches the barrier or returns; the barrier is released only when every thread of the block has
//   reached it, and a block whose threads disagree (some returned, some wait) is reported as an error;
// - __shared__ memory is one array per block (blocks run one after another, so a static array serves each
//   block in turn and is not shared between blocks running at the same time).
// Threads run in increasing threadIdx order between barriers, so a missing barrier before reading another
// thread's shared-memory slot reads a value not yet written and gives a wrong result.
#pragma once
// Only C headers: the shim is compiled once per kernel, and the C++ library headers would triple that time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static

struct tj_dim3 { unsigned int x, y, z; };
// volatile: a fiber that resumes after a barrier must not use a value cached before the switch
static volatile tj_dim3 threadIdx, blockIdx, blockDim, gridDim;

// CUDA's 16-byte vector types, aligned like on the GPU
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };

static inline float __int_as_float(int b) { float f; memcpy(&f, &b, 4); return f; }
static inline double __longlong_as_double(long long b) { double d; memcpy(&d, &b, 8); return d; }

namespace tj {
const size_t kStack = 64 * 1024;
struct Fiber { ucontext_t ctx; bool done, waiting; char* stack; };
static ucontext_t main_ctx;
static Fiber fibers[1024];   // CUDA's limit of threads per block (checked by the Python launcher)
static size_t current;
static void (*body)(void**);
static void** args;

static void trampoline() {
  body(args);
  fibers[current].done = true;   // returning switches to uc_link (main_ctx)
}

// call kernel(P0 a[0], P1 a[1], ...): the argument array unpacked into the kernel's own parameter types
template <size_t... I> struct Seq {};
template <size_t N, size_t... I> struct MakeSeq : MakeSeq<N - 1, N - 1, I...> {};
template <size_t... I> struct MakeSeq<0, I...> { typedef Seq<I...> type; };
template <class... P, size_t... I>
static void call(void (*kernel)(P...), void** a, Seq<I...>) { kernel((P)a[I]...); }
template <class... P>
static void call(void (*kernel)(P...), void** a) { call(kernel, a, typename MakeSeq<sizeof...(P)>::type()); }

static void set_thread(size_t t) {
  threadIdx.x = t % blockDim.x;
  threadIdx.y = t / blockDim.x % blockDim.y;
  threadIdx.z = t / (blockDim.x * blockDim.y);
}

// Run one block with fibers; returns 0, or -1 (message in err) when the threads disagree about a barrier.
static int run_block_fibers(size_t n, char* err, int errlen) {
  for (size_t t = 0; t < n; t++) {
    Fiber& f = fibers[t];
    if (!f.stack) f.stack = (char*)malloc(kStack);   // kept for the next launch
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &main_ctx;
    makecontext(&f.ctx, trampoline, 0);
    f.done = f.waiting = false;
  }
  for (int round = 0;; round++) {
    size_t done = 0, waiting = 0;
    for (size_t t = 0; t < n; t++) {
      Fiber& f = fibers[t];
      if (f.done) { done++; continue; }
      f.waiting = false;
      current = t;
      set_thread(t);
      swapcontext(&main_ctx, &f.ctx);
      if (f.done) done++; else waiting++;
    }
    if (done == n) return 0;
    if (done != 0) {
      snprintf(err, errlen, "block (%u,%u,%u): %zu of %zu threads returned while the others wait at "
               "__syncthreads() number %d", blockIdx.x, blockIdx.y, blockIdx.z, done, n, round + 1);
      return -1;
    }
  }
}
}  // namespace tj

static void __syncthreads() {
  tj::Fiber& f = tj::fibers[tj::current];
  f.waiting = true;
  swapcontext(&f.ctx, &tj::main_ctx);
}

// Launch `kernel_body` (which unpacks args) over grid x block; 0 on success.
static int tj_launch(void (*kernel_body)(void**), bool uses_barrier, void** a, const unsigned* grid,
                     const unsigned* block, char* err, int errlen) {
  gridDim.x = grid[0]; gridDim.y = grid[1]; gridDim.z = grid[2];
  blockDim.x = block[0]; blockDim.y = block[1]; blockDim.z = block[2];
  size_t n = (size_t)block[0] * block[1] * block[2];
  tj::body = kernel_body;
  tj::args = a;
  for (unsigned z = 0; z < grid[2]; z++)
    for (unsigned y = 0; y < grid[1]; y++)
      for (unsigned x = 0; x < grid[0]; x++) {
        blockIdx.x = x; blockIdx.y = y; blockIdx.z = z;
        if (uses_barrier) {
          if (tj::run_block_fibers(n, err, errlen) != 0) return -1;
        } else {
          for (size_t t = 0; t < n; t++) { tj::set_thread(t); kernel_body(a); }
        }
      }
  return 0;
}
