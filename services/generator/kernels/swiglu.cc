// SwiGLU: the gated activation of Llama's MLP, on the output of its fused gate and up
// projection.
//
//   Y[..., i] = silu(X[..., i]) * X[..., F + i],   silu(g) = g / (1 + exp(-g))
//
// Input: X float [..., 2F] (gate, then up). Output: Y float [..., F]. One node instead of
// a Split, a Sigmoid-times-input and a Mul, and one pass over memory instead of three.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops.h"

namespace marquee {
namespace {

// Rows per task.
constexpr int64_t kRowsPerTask = 4;

struct Problem {
  const float* x;
  float* y;
  int64_t rows, width;
};

void RowGeneric(const float* x, float* y, int64_t width) {
  for (int64_t i = 0; i < width; ++i) y[i] = x[i] / (1.f + std::exp(-x[i])) * x[width + i];
}

#ifdef MARQUEE_AVX512
__attribute__((target("avx512f,fma"))) void RowAvx512(const float* x, float* y, int64_t width) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < width; i += 16) {
    const __mmask16 m = width - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (width - i)) - 1);
    const __m512 gate = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 up = _mm512_maskz_loadu_ps(m, x + width + i);
    // Exp saturates near -g = 88 (g / 1e38 is ~0, as silu is there) and is 0 below -87.
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), gate));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_div_ps(gate, _mm512_add_ps(one, e)), up));
  }
}
#endif

void Task(void* data, size_t task) {
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t r1 = std::min(p.rows, int64_t(task + 1) * kRowsPerTask);
  for (int64_t r = int64_t(task) * kRowsPerTask; r < r1; ++r) {
    const float* x = p.x + r * 2 * p.width;
    float* y = p.y + r * p.width;
#ifdef MARQUEE_AVX512
    if (UsesAvx512()) {
      RowAvx512(x, y, p.width);
      continue;
    }
#endif
    RowGeneric(x, y, p.width);
  }
}

OrtStatus* ORT_API_CALL Compute(void*, OrtKernelContext* context) {
  std::vector<int64_t> xs;
  Problem p{};
  RETURN_IF_ERROR(Input(context, 0, &xs, reinterpret_cast<const void**>(&p.x)));
  if (xs.empty() || xs.back() % 2 != 0)
    return Error("SwiGLU: X's last dimension must be even (gate, then up)");
  p.width = xs.back() / 2;
  p.rows = 1;
  for (size_t i = 0; i + 1 < xs.size(); ++i) p.rows *= xs[i];
  std::vector<int64_t> ys(xs);
  ys.back() = p.width;
  RETURN_IF_ERROR(Output(context, 0, ys, &p.y));
  if (p.rows == 0 || p.width == 0) return nullptr;
  const size_t tasks = size_t((p.rows + kRowsPerTask - 1) / kRowsPerTask);
  return api->KernelContext_ParallelFor(context, Task, tasks, 0, &p);
}

OrtStatus* ORT_API_CALL CreateKernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*,
                                     void** state) {
  *state = nullptr;
  return nullptr;
}

void ORT_API_CALL Destroy(void*) {}

}  // namespace

Op& SwiGLU() {
  static Op op = MakeOp("SwiGLU", {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT}, 1, CreateKernel, Compute,
                        Destroy);
  return op;
}

}  // namespace marquee
