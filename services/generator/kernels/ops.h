// What Marquee's custom ops share: onnxruntime's C API, input helpers, op definitions, and
// which code path this CPU runs.
#pragma once

#include <cstdint>
#include <vector>

#include "onnxruntime_c_api.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MARQUEE_AVX512 1
#endif

namespace marquee {

// The oldest onnxruntime API the ops ask for: KernelContext_ParallelFor (1.17).
constexpr uint32_t kApiVersion = 17;

extern const OrtApi* api;

// Whether the AVX-512 paths run: the CPU has them and MARQUEE_KERNELS_PORTABLE is unset
// (tests force the portable paths with it).
bool UsesAvx512();

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

// The ops (each defined in its own file).
Op& MatMulQ4_1();
Op& CachedAttention();

}  // namespace marquee
