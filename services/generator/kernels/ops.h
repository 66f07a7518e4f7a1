// What Marquee's custom ops share: onnxruntime's C API, input helpers, op definitions, and
// which code path this CPU runs.
#pragma once

#include <cstdint>
#include <vector>

#include "onnxruntime_c_api.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MARQUEE_AVX512 1
// AMX tile intrinsics: GCC 11 and Clang 12 on (older compilers build the rest without).
#if (defined(__clang__) && __clang_major__ >= 12) || \
    (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define MARQUEE_AMX 1
#endif
#endif

namespace marquee {

// The oldest onnxruntime API the ops ask for: KernelContext_ParallelFor (1.17).
constexpr uint32_t kApiVersion = 17;

extern const OrtApi* api;

// Whether the AVX-512 paths run: the CPU has them and MARQUEE_KERNELS_PORTABLE is unset
// (tests force the portable paths with it).
bool UsesAvx512();

// Whether MatMulQ4_1 and MatMulQ8_0 may use AMX bf16 tiles: UsesAvx512(), the compiler
// knows AMX, the CPU has AMX-BF16 and AVX512-BW, Linux grants the tile state, and
// MARQUEE_KERNELS_NO_AMX is unset.
bool UsesAmx();

#define RETURN_IF_ERROR(expr)            \
  do {                                   \
    if (OrtStatus* s = (expr)) return s; \
  } while (0)

OrtStatus* Error(const char* message);

// The shape of input `index`, and its data.
OrtStatus* Input(OrtKernelContext* context, size_t index, std::vector<int64_t>* shape,
                 const void** data);

// Output `index` with `shape`, and its data.
OrtStatus* Output(OrtKernelContext* context, size_t index, const std::vector<int64_t>& shape,
                  float** data);

using CreateFn = OrtStatus*(ORT_API_CALL*)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*,
                                           void**);
using ComputeFn = OrtStatus*(ORT_API_CALL*)(void*, OrtKernelContext*);
using DestroyFn = void(ORT_API_CALL*)(void*);

// A CPU op of required inputs (`inputs`: their element types) and float outputs.
struct Op : OrtCustomOp {
  const char* name;
  std::vector<ONNXTensorElementDataType> inputs;
  size_t outputs;
};

Op MakeOp(const char* name, std::vector<ONNXTensorElementDataType> inputs, size_t outputs,
          CreateFn create, ComputeFn compute, DestroyFn destroy);

#ifdef MARQUEE_AVX512
// exp(x) to ~1 ulp (Cephes' polynomial); 0 where it would be denormal (no slow paths) and
// for NaN, about 2.4e38 from x = 88.4 up (never inf).
__attribute__((target("avx512f,fma"))) inline __m512 Exp(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33f), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33f)), _mm512_set1_ps(88.37f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_maskz_mov_ps(normal, _mm512_scalef_ps(y, n));
}
#endif

// The ops (each defined in its own file).
Op& MatMulQ4_1();
Op& MatMulQ8_0();
Op& CachedAttention();
Op& SwiGLU();

}  // namespace marquee
