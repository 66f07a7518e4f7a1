// MatMulQ4_1: an onnxruntime custom op for GGUF Q4_1 block weights with fp32 compute.
//
//   Y[..., n] = sum_k X[..., k] * W[n, k],   W[n, 32b + j] = d[n, b] * q[n, b, j] + m[n, b]
//
// Inputs: X float [..., K]; Q uint8 [N, K/32, 16] (GGUF's nibble order: byte j holds
// element j in its low nibble and element j + 16 in its high one); D and M float
// [N, K/32] (each block's scale and minimum). Output: Y float [..., N].
//
// onnxruntime's MatMulNBits has no exact form for Q4_1's per-block minimum (its zero
// points are integers; the graph would need an offset term of three more nodes), and its
// fp32 kernel gains little from a few rows at once (4 rows cost ~4x one here). Here:
// - decode steps (up to kPanelMinRows rows): each block is dequantized once, in registers,
//   and used for up to eight rows at a time;
// - prompt passes: a task's 32 columns are dequantized once into a k-major panel for a
//   GEMM microkernel (12 rows x 32 columns in registers, each x broadcast used twice).
// Columns are spread over the session's intra-op threads, 32 per task.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

#include "ops.h"

namespace marquee {
namespace {

constexpr int64_t kBlock = 32;
// Columns per task, and the width of a prompt pass's panel (two vectors).
constexpr int64_t kColumnsPerTask = 32;
// Rows per tile: 8 rows of x (18-48 KB for SmolLM2) mostly stay in L1 as columns stream by.
constexpr int kRowTile = 8;
// From this many rows on (prompt passes), a task dequantizes its columns once into a panel
// for a GEMM microkernel of kPanelRows rows: faster than the tiles from ~64 rows (below,
// the panel costs as much to fill as a few tiles to run).
constexpr int64_t kPanelMinRows = 64;
constexpr int kPanelRows = 12;
// Tiles of up to this many rows (bound by reading weights, not by FMAs) prefetch this
// many blocks ahead (512 bytes ahead in the nibbles, in the scales and in the minimums).
constexpr int kPrefetchRows = 2;
constexpr int64_t kPrefetchBlocks = 32;

struct Problem {
  const float* x;
  const uint8_t* q;
  const float* d;
  const float* m;
  float* y;
  int64_t rows, k, n, blocks;
  // Set by a task that could not allocate its scratch (exceptions must not cross the C API).
  mutable std::atomic<bool> failed{false};
};

// Portable path: any CPU.
void ColumnsGeneric(const Problem& p, int64_t n0, int64_t n1) {
  std::vector<float> w(p.k);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = p.q + n * p.blocks * 16;
    for (int64_t b = 0; b < p.blocks; ++b) {
      const float d = p.d[n * p.blocks + b], m = p.m[n * p.blocks + b];
      for (int j = 0; j < 16; ++j) {
        w[b * kBlock + j] = d * float(q[b * 16 + j] & 0xF) + m;
        w[b * kBlock + j + 16] = d * float(q[b * 16 + j] >> 4) + m;
      }
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* x = p.x + r * p.k;
      float sum = 0.f;
      for (int64_t i = 0; i < p.k; ++i) sum += x[i] * w[i];
      p.y[r * p.n + n] = sum;
    }
  }
}

#ifdef MARQUEE_AVX512
// AVX-512: R rows by C columns, accumulators in registers, each block dequantized once.
template <int R, int C>
__attribute__((target("avx512f,fma"))) void TileAvx512(const Problem& p, int64_t r0, int64_t n,
                                                        int columns) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const __m512i low = _mm512_set1_epi32(0xF);
  const uint8_t* q[C];
  const float *d[C], *m[C];
  for (int c = 0; c < C; ++c) {
    const int64_t column = n + std::min(c, columns - 1);  // a short tile repeats its last
    q[c] = p.q + column * p.blocks * 16;
    d[c] = p.d + column * p.blocks;
    m[c] = p.m + column * p.blocks;
  }
  const float* x = p.x + r0 * p.k;
  for (int64_t b = 0; b < p.blocks; ++b) {
    __m512 wl[C], wh[C];
    if constexpr (R <= kPrefetchRows) {
      // A few rows stream the weights faster than the hardware prefetcher follows 3C
      // streams: ask for each column's next lines (4 blocks of nibbles, 16 scales) ahead.
      if (b % 4 == 0)
        for (int c = 0; c < C; ++c) {
          _mm_prefetch(reinterpret_cast<const char*>(q[c] + (b + kPrefetchBlocks) * 16),
                       _MM_HINT_T0);
          if (b % 16 == 0) {
            _mm_prefetch(reinterpret_cast<const char*>(d[c] + b + 4 * kPrefetchBlocks),
                         _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(m[c] + b + 4 * kPrefetchBlocks),
                         _MM_HINT_T0);
          }
        }
    }
    for (int c = 0; c < C; ++c) {
      const __m512i v = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[c] + b * 16)));
      const __m512 scale = _mm512_set1_ps(d[c][b]), min = _mm512_set1_ps(m[c][b]);
      wl[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, low)), scale, min);
      wh[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), scale, min);
    }
    for (int r = 0; r < R; ++r) {
      const __m512 xl = _mm512_loadu_ps(x + r * p.k + b * kBlock);
      const __m512 xh = _mm512_loadu_ps(x + r * p.k + b * kBlock + 16);
      for (int c = 0; c < C; ++c) {
        acc[r][c] = _mm512_fmadd_ps(xl, wl[c], acc[r][c]);
        acc[r][c] = _mm512_fmadd_ps(xh, wh[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < columns; ++c) p.y[(r0 + r) * p.n + n + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <int R, int C>
__attribute__((target("avx512f,fma"))) void RowsAvx512(const Problem& p, int64_t r0, int64_t n0,
                                                        int64_t n1) {
  for (int64_t n = n0; n < n1; n += C)
    TileAvx512<R, C>(p, r0, n, int(std::min<int64_t>(C, n1 - n)));
}

// Few rows: four columns at once, so the FMA chains overlap; more: two.
template <int R>
__attribute__((target("avx512f,fma"))) void RowsAvx512(const Problem& p, int64_t r0, int64_t n0,
                                                        int64_t n1) {
  constexpr int C = R <= 2 ? 4 : 2;
  RowsAvx512<R, C>(p, r0, n0, n1);
}

template <int... R>
__attribute__((target("avx512f,fma"))) void RemainderAvx512(
    const Problem& p, int64_t r0, int64_t n0, int64_t n1, std::integer_sequence<int, R...>) {
  const int64_t rows = p.rows - r0;
  ((rows == R + 1 ? RowsAvx512<R + 1>(p, r0, n0, n1) : void()), ...);
}

// Many rows (a prompt): the task's columns are dequantized once into a k-major panel,
// then a GEMM microkernel keeps 12 rows by 32 columns in registers and broadcasts x.
template <int R>
__attribute__((target("avx512f,fma"))) void PanelTileAvx512(const Problem& p, const float* panel,
                                                             int64_t r0, int64_t n0,
                                                             __mmask16 left, __mmask16 right) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const float* x = p.x + r0 * p.k;
  for (int64_t k = 0; k < p.k; ++k) {
    const __m512 w0 = _mm512_loadu_ps(panel + k * kColumnsPerTask);
    const __m512 w1 = _mm512_loadu_ps(panel + k * kColumnsPerTask + 16);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * p.k + k]);
      acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(p.y + (r0 + r) * p.n + n0, left, acc[r][0]);
    _mm512_mask_storeu_ps(p.y + (r0 + r) * p.n + n0 + 16, right, acc[r][1]);
  }
}

template <int... R>
__attribute__((target("avx512f,fma"))) void PanelRemainderAvx512(
    const Problem& p, const float* panel, int64_t r0, int64_t n0, __mmask16 left,
    __mmask16 right, std::integer_sequence<int, R...>) {
  const int64_t rows = p.rows - r0;
  ((rows == R + 1 ? PanelTileAvx512<R + 1>(p, panel, r0, n0, left, right) : void()), ...);
}

// Dequantizes up to 16 columns from n0 into panel[k][column]: lane c of each
// gather reads column n0 + c. The 4-byte gathers stay inside their 16-byte block, so none
// reads past the weights.
__attribute__((target("avx512f,fma"))) void FillPanelAvx512(const Problem& p, int64_t n0,
                                                             __mmask16 columns, float* panel) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i scale_at = _mm512_mullo_epi32(lane, _mm512_set1_epi32(int(p.blocks)));
  const __m512i nibbles_at = _mm512_mullo_epi32(lane, _mm512_set1_epi32(int(p.blocks * 16)));
  const __m512i low = _mm512_set1_epi32(0xF);
  const uint8_t* q = p.q + n0 * p.blocks * 16;
  const float* d = p.d + n0 * p.blocks;
  const float* m = p.m + n0 * p.blocks;
  for (int64_t b = 0; b < p.blocks; ++b) {
    const __m512i at = _mm512_add_epi32(scale_at, _mm512_set1_epi32(int(b)));
    const __m512 scale = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), columns, at, d, 4);
    const __m512 min = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), columns, at, m, 4);
    float* out = panel + b * kBlock * kColumnsPerTask;
    for (int word = 0; word < 4; ++word) {
      const __m512i bytes = _mm512_mask_i32gather_epi32(
          _mm512_setzero_si512(), columns,
          _mm512_add_epi32(nibbles_at, _mm512_set1_epi32(int(b * 16 + 4 * word))), q, 1);
      for (int byte = 0; byte < 4; ++byte) {
        const int j = 4 * word + byte;  // elements j and j + 16 of the block
        const __m512i v = _mm512_srli_epi32(bytes, 8 * byte);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, low));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, 4), low));
        _mm512_storeu_ps(out + j * kColumnsPerTask, _mm512_fmadd_ps(lo, scale, min));
        _mm512_storeu_ps(out + (j + 16) * kColumnsPerTask, _mm512_fmadd_ps(hi, scale, min));
      }
    }
  }
}

__attribute__((target("avx512f,fma"))) void PanelAvx512(const Problem& p, int64_t n0,
                                                         int64_t n1) {
  auto mask = [](int64_t count) {
    return __mmask16(count <= 0 ? 0 : count >= 16 ? 0xFFFF : (1u << count) - 1);
  };
  const __mmask16 left = mask(n1 - n0), right = mask(n1 - n0 - 16);
  std::vector<float> panel(size_t(p.k * kColumnsPerTask), 0.0f);
  FillPanelAvx512(p, n0, left, panel.data());
  if (right) FillPanelAvx512(p, n0 + 16, right, panel.data() + 16);
  int64_t r = 0;
  for (; r + kPanelRows <= p.rows; r += kPanelRows)
    PanelTileAvx512<kPanelRows>(p, panel.data(), r, n0, left, right);
  if (r < p.rows)
    PanelRemainderAvx512(p, panel.data(), r, n0, left, right,
                         std::make_integer_sequence<int, kPanelRows - 1>{});
}

__attribute__((target("avx512f,fma"))) void ColumnsAvx512(const Problem& p, int64_t n0,
                                                           int64_t n1) {
  if (p.rows >= kPanelMinRows) return PanelAvx512(p, n0, n1);
  int64_t r = 0;
  for (; r + kRowTile <= p.rows; r += kRowTile) RowsAvx512<kRowTile>(p, r, n0, n1);
  if (r < p.rows)
    RemainderAvx512(p, r, n0, n1, std::make_integer_sequence<int, kRowTile - 1>{});
}

#endif

void Task(void* data, size_t task) {
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t n0 = int64_t(task) * kColumnsPerTask;
  const int64_t n1 = std::min(p.n, n0 + kColumnsPerTask);
  try {
#ifdef MARQUEE_AVX512
    if (UsesAvx512()) return ColumnsAvx512(p, n0, n1);
#endif
    ColumnsGeneric(p, n0, n1);
  } catch (const std::bad_alloc&) {
    p.failed = true;
  }
}

struct Kernel {
  int64_t k, n;
};

OrtStatus* ORT_API_CALL Compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<Kernel*>(state);
  std::vector<int64_t> xs, qs, ds, ms;
  Problem p{};
  RETURN_IF_ERROR(Input(context, 0, &xs, reinterpret_cast<const void**>(&p.x)));
  RETURN_IF_ERROR(Input(context, 1, &qs, reinterpret_cast<const void**>(&p.q)));
  RETURN_IF_ERROR(Input(context, 2, &ds, reinterpret_cast<const void**>(&p.d)));
  RETURN_IF_ERROR(Input(context, 3, &ms, reinterpret_cast<const void**>(&p.m)));
  p.k = kernel.k;
  p.n = kernel.n;
  p.blocks = p.k / kBlock;
  if (xs.empty() || xs.back() != p.k) return Error("MatMulQ4_1: X's last dimension is not K");
  const std::vector<int64_t> blocks{p.n, p.blocks};
  if (qs != std::vector<int64_t>{p.n, p.blocks, 16} || ds != blocks || ms != blocks)
    return Error("MatMulQ4_1: Q must be [N, K/32, 16] and D, M [N, K/32]");
  p.rows = 1;
  for (size_t i = 0; i + 1 < xs.size(); ++i) p.rows *= xs[i];
  std::vector<int64_t> ys(xs);
  ys.back() = p.n;
  RETURN_IF_ERROR(Output(context, 0, ys, &p.y));
  if (p.rows == 0) return nullptr;
  const size_t tasks = size_t((p.n + kColumnsPerTask - 1) / kColumnsPerTask);
  RETURN_IF_ERROR(api->KernelContext_ParallelFor(context, Task, tasks, 0, &p));
  if (p.failed) return api->CreateStatus(ORT_FAIL, "MatMulQ4_1: out of memory");
  return nullptr;
}

OrtStatus* ORT_API_CALL CreateKernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info,
                                     void** state) {
  int64_t k = 0, n = 0;
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "K", &k));
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "N", &n));
  if (k <= 0 || n <= 0 || k % kBlock != 0)
    return Error("MatMulQ4_1: K and N must be positive and K a multiple of 32");
  *state = new Kernel{k, n};
  return nullptr;
}

void ORT_API_CALL Destroy(void* state) { delete static_cast<Kernel*>(state); }

}  // namespace

Op& MatMulQ4_1() {
  static Op op = MakeOp("MatMulQ4_1",
                        {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
                         ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT},
                        1, CreateKernel, Compute, Destroy);
  return op;
}

}  // namespace marquee
