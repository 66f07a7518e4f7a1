// MatMulQ4_1 and MatMulQ8_0: onnxruntime custom ops for GGUF Q4_1 and Q8_0 block weights
// with fp32 compute.
//
//   Y[..., n] = sum_k X[..., k] * W[n, k],
//   W[n, 32b + j] = d[n, b] * q[n, b, j] + m[n, b]   (Q4_1)
//   W[n, 32b + j] = d[n, b] * q[n, b, j]             (Q8_0)
//
// MatMulQ4_1's inputs: X float [..., K]; Q uint8 [N, K/32, 16] (GGUF's nibble order: byte j
// holds element j in its low nibble and element j + 16 in its high one); D and M float
// [N, K/32] (each block's scale and minimum). MatMulQ8_0's: X; Q int8 [N, K/32, 32]; D.
// Output: Y float [..., N].
//
// onnxruntime's MatMulNBits has no exact form for Q4_1's per-block minimum (its zero
// points are integers; the graph would need an offset term of three more nodes), no fp32
// kernel for 8-bit blocks (only int8 activations, which move logits), and its fp32 kernel
// gains little from a few rows at once (4 rows cost ~4x one here). Here:
// - decode steps (up to kPanelMinRows rows; without AMX, see below): each block is
//   dequantized once, in registers, and used for up to eight rows at a time;
// - Q4_1 prompt passes: a task's 32 columns are dequantized once into a k-major panel for a
//   GEMM microkernel (12 rows x 32 columns in registers, each x broadcast used twice);
// - on CPUs with AMX, from kAmxMinRows rows (batched decode steps and prompt passes), when
//   the weights are initializers: bf16 tiles, with x split into three bf16 terms so the
//   result keeps fp32's precision (see ColumnsAmx), on a rearranged copy of the weights
//   made on first use (single-threaded: ~50 ms for a 49152 x 576 matrix here).
// Columns are spread over the session's intra-op threads, 32 per task (64 with AMX).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
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
// many blocks ahead (512 bytes ahead in Q4_1's nibbles, 1 KB in Q8_0's bytes; 128 bytes in
// the scales and the minimums).
constexpr int kPrefetchRows = 2;
constexpr int64_t kPrefetchBlocks = 32;
// From this many rows on, CPUs with AMX multiply in bf16 tiles (see ColumnsAmx).
constexpr int64_t kAmxMinRows = 8;
// Columns per AMX task, in groups of 16: each block of x, loaded into tiles once, serves them
// all.
constexpr int kAmxGroups = 4;
constexpr int64_t kAmxColumnsPerTask = 16 * kAmxGroups;

struct AmxInput;

struct Problem {
  const float* x;
  const uint8_t* q;
  const float* d;
  const float* m;
  float* y;
  int64_t rows, k, n, blocks;
  // 4: Q4_1 (Q nibbles, M minimums); 8: Q8_0 (Q signed bytes, no M).
  int bits;
  // x in the AMX path's form, when it runs.
  const AmxInput* amx = nullptr;
  // Set by a task that could not allocate its scratch (exceptions must not cross the C API).
  mutable std::atomic<bool> failed{false};
};

// Portable path: any CPU.
void ColumnsGeneric(const Problem& p, int64_t n0, int64_t n1) {
  std::vector<float> w(p.k);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = p.q + n * p.blocks * p.bits * 4;
    for (int64_t b = 0; b < p.blocks; ++b) {
      const float d = p.d[n * p.blocks + b];
      if (p.bits == 8) {
        for (int j = 0; j < 32; ++j) w[b * kBlock + j] = d * float(int8_t(q[b * 32 + j]));
        continue;
      }
      const float m = p.m[n * p.blocks + b];
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
template <int Bits, int R, int C>
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
    q[c] = p.q + column * p.blocks * Bits * 4;
    d[c] = p.d + column * p.blocks;
    m[c] = Bits == 4 ? p.m + column * p.blocks : nullptr;
  }
  const float* x = p.x + r0 * p.k;
  for (int64_t b = 0; b < p.blocks; ++b) {
    __m512 wl[C], wh[C];
    if constexpr (R <= kPrefetchRows) {
      // A few rows stream the weights faster than the hardware prefetcher follows 3C
      // streams: ask for each column's next lines (4 blocks of nibbles or 2 of bytes, 16
      // scales) ahead.
      if (b % (16 / Bits) == 0)
        for (int c = 0; c < C; ++c) {
          _mm_prefetch(reinterpret_cast<const char*>(q[c] + (b + kPrefetchBlocks) * Bits * 4),
                       _MM_HINT_T0);
          if (b % 16 == 0) {
            _mm_prefetch(reinterpret_cast<const char*>(d[c] + b + 4 * kPrefetchBlocks),
                         _MM_HINT_T0);
            if constexpr (Bits == 4)
              _mm_prefetch(reinterpret_cast<const char*>(m[c] + b + 4 * kPrefetchBlocks),
                           _MM_HINT_T0);
          }
        }
    }
    for (int c = 0; c < C; ++c) {
      const __m512 scale = _mm512_set1_ps(d[c][b]);
      if constexpr (Bits == 8) {
        const auto* bytes = reinterpret_cast<const __m128i*>(q[c] + b * 32);
        wl[c] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(bytes))),
                              scale);
        wh[c] = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(bytes + 1))), scale);
      } else {
        const __m512i v = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[c] + b * 16)));
        const __m512 min = _mm512_set1_ps(m[c][b]);
        wl[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, low)), scale, min);
        wh[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), scale, min);
      }
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

template <int Bits, int R, int C>
__attribute__((target("avx512f,fma"))) void RowsAvx512(const Problem& p, int64_t r0, int64_t n0,
                                                        int64_t n1) {
  for (int64_t n = n0; n < n1; n += C)
    TileAvx512<Bits, R, C>(p, r0, n, int(std::min<int64_t>(C, n1 - n)));
}

// Few rows: four columns at once, so the FMA chains overlap; more: two.
template <int Bits, int R>
__attribute__((target("avx512f,fma"))) void RowsAvx512(const Problem& p, int64_t r0, int64_t n0,
                                                        int64_t n1) {
  constexpr int C = R <= 2 ? 4 : 2;
  RowsAvx512<Bits, R, C>(p, r0, n0, n1);
}

template <int Bits, int... R>
__attribute__((target("avx512f,fma"))) void RemainderAvx512(
    const Problem& p, int64_t r0, int64_t n0, int64_t n1, std::integer_sequence<int, R...>) {
  const int64_t rows = p.rows - r0;
  ((rows == R + 1 ? RowsAvx512<Bits, R + 1>(p, r0, n0, n1) : void()), ...);
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

// (Q8_0 weights, in this project the vocabulary projection, see a prompt pass's last
// positions only: no panel for them.)
template <int Bits>
__attribute__((target("avx512f,fma"))) void ColumnsAvx512(const Problem& p, int64_t n0,
                                                           int64_t n1) {
  if (Bits == 4 && p.rows >= kPanelMinRows) return PanelAvx512(p, n0, n1);
  int64_t r = 0;
  for (; r + kRowTile <= p.rows; r += kRowTile) RowsAvx512<Bits, kRowTile>(p, r, n0, n1);
  if (r < p.rows)
    RemainderAvx512<Bits>(p, r, n0, n1, std::make_integer_sequence<int, kRowTile - 1>{});
}

#endif

#ifdef MARQUEE_AMX

// AMX (bf16 tiles), from kAmxMinRows rows: Y = sum over blocks of d * (x . q) + m * sum(x).
// The codes q (Q4_1's 0..15, Q8_0's -128..127) are exact in bf16, and x is split into three
// bf16 terms (24 significant bits), so the tiles, summing in fp32, agree with the fp32 path
// to its own rounding. Within each block x is stored as pairs (element i, element i + 16),
// the order in which a Q4_1 byte holds its two nibbles, so a tile row of nibbles is byte i
// of 16 columns.

// The weights rearranged for the tiles, once per node on first use (the same size again as
// Q, D and M), in the order a task reads them: per task's columns, block and group of 16
// columns, tile row i's codes side by side ([tasks][blocks][kAmxGroups][16 rows]: Q4_1's
// byte i of each column, 16 bytes; Q8_0's element i of each column, then element i + 16,
// 32 bytes), and the columns' scales and minimums ([tasks][blocks][kAmxGroups][32]; Q8_0's
// minimums are 0).
struct AmxWeights {
  std::once_flag once;
  bool ready = false;  // false after running out of memory: the AVX-512 path serves
  std::vector<uint8_t> q;
  std::vector<float> dm;
};

// Never throws: it runs under std::call_once, which must not be left by an exception in a
// library linked with a static libstdc++ (some hosts abort).
void RepackAmx(const Problem& p, AmxWeights* w) noexcept try {
  const int64_t items = (p.n + kAmxColumnsPerTask - 1) / kAmxColumnsPerTask * kAmxGroups * p.blocks;
  const int64_t bytes = p.bits * 4;  // per column and block
  w->q.assign(size_t(items * 16 * bytes), 0);
  w->dm.assign(size_t(items * 32), 0.0f);
  for (int64_t n = 0; n < p.n; ++n)
    for (int64_t b = 0; b < p.blocks; ++b) {
      const int64_t task = n / kAmxColumnsPerTask, group = n % kAmxColumnsPerTask / 16;
      const int64_t at = (task * p.blocks + b) * kAmxGroups + group, c = n % 16;
      const uint8_t* from = p.q + (n * p.blocks + b) * bytes;
      uint8_t* to = w->q.data() + at * 16 * bytes;
      for (int i = 0; i < 16; ++i) {
        to[i * bytes + c] = from[i];
        if (p.bits == 8) to[i * bytes + 16 + c] = from[i + 16];
      }
      w->dm[size_t(at * 32 + c)] = p.d[n * p.blocks + b];
      if (p.m) w->dm[size_t(at * 32 + 16 + c)] = p.m[n * p.blocks + b];
    }
  w->ready = true;
} catch (const std::bad_alloc&) {
  w->q = {};
  w->dm = {};
}

struct AmxInput {
  // [rows16 / 16][blocks][hi, mid, lo][16 rows][16 pairs of bf16]: each tile is 1 KB in a row.
  std::vector<uint32_t> x;
  std::vector<float> sums;  // [rows16, blocks]
  int64_t rows16;
  const AmxWeights* weights;
};

__attribute__((target("avx512f,avx512bw"))) inline __m512i RoundBf16(__m512 v) {
  // Round to nearest even; the bf16 is the upper half of each lane (the lower half is zero).
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i up = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), odd);
  return _mm512_and_si512(up, _mm512_set1_epi32(int(0xFFFF0000u)));
}

__attribute__((target("avx512f,avx512bw"))) void PrepareAmx(const Problem& p, AmxInput* in) {
  in->rows16 = (p.rows + 15) / 16 * 16;
  in->x.assign(size_t(in->rows16 * p.blocks * 48), 0u);
  in->sums.assign(size_t(in->rows16 * p.blocks), 0.0f);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t b = 0; b < p.blocks; ++b) {
      const float* x = p.x + r * p.k + b * kBlock;
      __m512 a = _mm512_loadu_ps(x), c = _mm512_loadu_ps(x + 16);
      in->sums[size_t(r * p.blocks + b)] = _mm512_reduce_add_ps(_mm512_add_ps(a, c));
      uint32_t* out = in->x.data() + ((r / 16 * p.blocks + b) * 48 + r % 16) * 16;
      for (int term = 0; term < 3; ++term) {
        const __m512i at = RoundBf16(a), ct = RoundBf16(c);
        _mm512_storeu_si512(out + term * 256, _mm512_or_si512(_mm512_srli_epi32(at, 16), ct));
        a = _mm512_sub_ps(a, _mm512_castsi512_ps(at));
        c = _mm512_sub_ps(c, _mm512_castsi512_ps(ct));
      }
    }
}

struct TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

// A tile of nibbles from 16 columns' bytes of one block: row i holds, per column, the bf16
// pair (q[i], q[i + 16]).
__attribute__((target("avx512f,avx512bw"))) inline void NibbleTile(const uint8_t* bytes,
                                                                   uint32_t* tile) {
  // A 16-bit lane's low 5 bits pick bf16(v & 15): 1.0 is 0x3F80, 2.0 0x4000, ...
  alignas(64) static const uint16_t kBf16[32] = {
      0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0,
      0x4100, 0x4110, 0x4120, 0x4130, 0x4140, 0x4150, 0x4160, 0x4170,
      0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0,
      0x4100, 0x4110, 0x4120, 0x4130, 0x4140, 0x4150, 0x4160, 0x4170};
  const __m512i bf16_of = _mm512_load_si512(kBf16);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    // Low 16 bits: the byte (its low nibble counts); high 16: the byte shifted down by 4.
    const __m512i v =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + 16 * i)));
    const __m512i pair = _mm512_mask_blend_epi16(0x55555555, _mm512_slli_epi32(v, 12), v);
    _mm512_store_si512(tile + 16 * i, _mm512_permutexvar_epi16(pair, bf16_of));
  }
}

// The same from Q8_0's rearranged bytes: row i's 16 columns' element i, then element i + 16
// (bf16 of a small integer is its float's upper half).
__attribute__((target("avx512f,avx512bw"))) inline void ByteTile(const uint8_t* bytes,
                                                                 uint32_t* tile) {
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    const auto* row = reinterpret_cast<const __m128i*>(bytes + 32 * i);
    const __m512i low =
        _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(row))));
    const __m512i high =
        _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(row + 1))));
    _mm512_store_si512(tile + 16 * i,
                       _mm512_mask_blend_epi16(0x55555555, high, _mm512_srli_epi32(low, 16)));
  }
}

template <int Bits>
__attribute__((target("avx512f,avx512bw"))) inline void CodeTile(const uint8_t* codes,
                                                                 uint32_t* tile) {
  if constexpr (Bits == 8)
    ByteTile(codes, tile);
  else
    NibbleTile(codes, tile);
}

// One block's products for 16 rows and 16 columns into `out`: tile C = x's three terms
// (tiles 2-4) times the codes (tile B). (GCC's tile intrinsics paste the register number
// into the instruction, so C and B must be literals.)
#define MARQUEE_BLOCK_PRODUCTS(C, B, codes, out)   \
  do {                                             \
    _tile_loadd(B, codes, 64);                     \
    _tile_zero(C);                                 \
    _tile_dpbf16ps(C, 2, B);                       \
    _tile_dpbf16ps(C, 3, B);                       \
    _tile_dpbf16ps(C, 4, B);                       \
    _tile_stored(C, out, 64);                      \
  } while (0)

// acc[r] += products[r] * d (+ sums[r] * m for Q4_1) for 16 rows.
template <int Bits>
__attribute__((target("avx512f,fma"))) inline void Scale(float (*acc)[16],
                                                         const float (*products)[16],
                                                         const float* dm, const float* sums,
                                                         int64_t sums_stride) {
  const __m512 d = _mm512_loadu_ps(dm), m = _mm512_loadu_ps(dm + 16);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) {
    __m512 sum = _mm512_load_ps(acc[r]);
    if constexpr (Bits == 4) sum = _mm512_fmadd_ps(_mm512_set1_ps(sums[r * sums_stride]), m, sum);
    _mm512_store_ps(acc[r], _mm512_fmadd_ps(_mm512_load_ps(products[r]), d, sum));
  }
}

// A task's columns in groups of 16 (up to kAmxGroups), its rows 16 at a time. Each block of
// x is loaded into tiles 2-4 once for all the groups. A tile register is not renamed, so
// alternate groups use tiles 0/5 and 1/6: one group's codes load while the other's
// multiply. Scaling a group's products (in memory) waits until the next group's tile work
// is issued. onnxruntime's threads have no tile state of their own: each task configures
// and releases it.
template <int Bits>
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,fma"))) void ColumnsAmx(
    const Problem& p, const AmxInput& in, int64_t n0, int64_t n1) {
  TileConfig config{};
  config.palette = 1;
  for (int t = 0; t < 7; ++t) {
    config.rows[t] = 16;
    config.bytes_per_row[t] = 64;
  }
  _tile_loadconfig(&config);
  const AmxWeights& w = *in.weights;
  constexpr int64_t kItem = 16 * Bits * 4;  // bytes of codes per block and 16 columns
  const int groups = int((n1 - n0 + 15) / 16);
  alignas(64) float acc[kAmxGroups][16][16];
  alignas(64) float products[2][16][16];
  alignas(64) uint32_t codes[2][256];  // tiles of Q4_1 nibbles or Q8_0 bytes
  // Work items (block b, group g), block-major; an item's codes are made while the one
  // before multiplies, and its products scaled while the one after multiplies.
  const int64_t first = n0 / kAmxColumnsPerTask * p.blocks * kAmxGroups;  // the task's weights
  for (int64_t r0 = 0; r0 < in.rows16; r0 += 16) {
    std::memset(acc, 0, sizeof acc);
    const float* sums = in.sums.data() + r0 * p.blocks;
    CodeTile<Bits>(w.q.data() + first * kItem, codes[0]);
    int64_t before = -1;  // the weights index of the item before, its group and parity
    int before_group = 0, parity = 0;
    for (int64_t b = 0; b < p.blocks; ++b) {
      const uint32_t* x = in.x.data() + (r0 / 16 * p.blocks + b) * 768;
      _tile_loadd(2, x, 64);
      _tile_loadd(3, x + 256, 64);
      _tile_loadd(4, x + 512, 64);
      for (int g = 0; g < groups; ++g, parity ^= 1) {
        const int64_t at = first + b * kAmxGroups + g;
        if (parity)
          MARQUEE_BLOCK_PRODUCTS(1, 6, codes[1], products[1]);
        else
          MARQUEE_BLOCK_PRODUCTS(0, 5, codes[0], products[0]);
        const int64_t next =
            g + 1 < groups ? at + 1 : b + 1 < p.blocks ? first + (b + 1) * kAmxGroups : -1;
        if (next >= 0) CodeTile<Bits>(w.q.data() + next * kItem, codes[parity ^ 1]);
        if (before >= 0)
          Scale<Bits>(acc[before_group], products[parity ^ 1], w.dm.data() + before * 32,
                sums + (g > 0 ? b : b - 1), p.blocks);
        before = at;
        before_group = g;
      }
    }
    Scale<Bits>(acc[before_group], products[parity ^ 1], w.dm.data() + before * 32,
          sums + p.blocks - 1, p.blocks);
    const int64_t rows = std::min<int64_t>(16, p.rows - r0);
    for (int g = 0; g < groups; ++g) {
      const int64_t column = n0 + 16 * g, count = std::min<int64_t>(16, n1 - column);
      for (int64_t r = 0; r < rows; ++r)
        _mm512_mask_storeu_ps(p.y + (r0 + r) * p.n + column, __mmask16((1u << count) - 1),
                              _mm512_load_ps(acc[g][r]));
    }
  }
  _tile_release();
}
#undef MARQUEE_BLOCK_PRODUCTS

#endif

void Task(void* data, size_t task) {
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t width = p.amx ? kAmxColumnsPerTask : kColumnsPerTask;
  const int64_t n0 = int64_t(task) * width;
  const int64_t n1 = std::min(p.n, n0 + width);
  try {
#ifdef MARQUEE_AMX
    if (p.amx)
      return p.bits == 8 ? ColumnsAmx<8>(p, *p.amx, n0, n1) : ColumnsAmx<4>(p, *p.amx, n0, n1);
#endif
#ifdef MARQUEE_AVX512
    if (UsesAvx512())
      return p.bits == 8 ? ColumnsAvx512<8>(p, n0, n1) : ColumnsAvx512<4>(p, n0, n1);
#endif
    ColumnsGeneric(p, n0, n1);
  } catch (const std::bad_alloc&) {
    p.failed = true;
  }
}

struct Kernel {
  int64_t k, n;
  // Whether Q, D and M are initializers (the same every run), which the AMX path's
  // rearranged copy needs.
  bool constant_weights;
#ifdef MARQUEE_AMX
  AmxWeights amx;
#endif
};

// MatMulQ4_1 (Bits 4: X, Q, D, M) and MatMulQ8_0 (Bits 8: X, Q, D).
template <int Bits>
OrtStatus* ORT_API_CALL Compute(void* state, OrtKernelContext* context) {
  Kernel& kernel = *static_cast<Kernel*>(state);
  std::vector<int64_t> xs, qs, ds, ms;
  Problem p{};
  p.bits = Bits;
  RETURN_IF_ERROR(Input(context, 0, &xs, reinterpret_cast<const void**>(&p.x)));
  RETURN_IF_ERROR(Input(context, 1, &qs, reinterpret_cast<const void**>(&p.q)));
  RETURN_IF_ERROR(Input(context, 2, &ds, reinterpret_cast<const void**>(&p.d)));
  if (Bits == 4) RETURN_IF_ERROR(Input(context, 3, &ms, reinterpret_cast<const void**>(&p.m)));
  p.k = kernel.k;
  p.n = kernel.n;
  p.blocks = p.k / kBlock;
  if (xs.empty() || xs.back() != p.k)
    return Error(Bits == 4 ? "MatMulQ4_1: X's last dimension is not K"
                           : "MatMulQ8_0: X's last dimension is not K");
  const std::vector<int64_t> blocks{p.n, p.blocks};
  if (qs != std::vector<int64_t>{p.n, p.blocks, Bits * 4} || ds != blocks ||
      (Bits == 4 && ms != blocks))
    return Error(Bits == 4 ? "MatMulQ4_1: Q must be [N, K/32, 16] and D, M [N, K/32]"
                           : "MatMulQ8_0: Q must be [N, K/32, 32] and D [N, K/32]");
  p.rows = 1;
  for (size_t i = 0; i + 1 < xs.size(); ++i) p.rows *= xs[i];
  std::vector<int64_t> ys(xs);
  ys.back() = p.n;
  RETURN_IF_ERROR(Output(context, 0, ys, &p.y));
  if (p.rows == 0) return nullptr;
#ifdef MARQUEE_AMX
  AmxInput amx;
  if (p.rows >= kAmxMinRows && kernel.constant_weights && UsesAmx()) {
    // Short of memory for the copy or the scratch, the AVX-512 path serves (it needs none).
    try {
      std::call_once(kernel.amx.once, RepackAmx, std::cref(p), &kernel.amx);
      if (kernel.amx.ready) {
        PrepareAmx(p, &amx);
        amx.weights = &kernel.amx;
        p.amx = &amx;
      }
    } catch (const std::exception&) {
      p.amx = nullptr;
    }
  }
#endif
  const int64_t width = p.amx ? kAmxColumnsPerTask : kColumnsPerTask;
  const size_t tasks = size_t((p.n + width - 1) / width);
  RETURN_IF_ERROR(api->KernelContext_ParallelFor(context, Task, tasks, 0, &p));
  if (p.failed)
    return api->CreateStatus(
        ORT_FAIL, Bits == 4 ? "MatMulQ4_1: out of memory" : "MatMulQ8_0: out of memory");
  return nullptr;
}

template <int Bits>
OrtStatus* ORT_API_CALL CreateKernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info,
                                     void** state) {
  int64_t k = 0, n = 0;
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "K", &k));
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "N", &n));
  if (k <= 0 || n <= 0 || k % kBlock != 0)
    return Error(Bits == 4 ? "MatMulQ4_1: K and N must be positive and K a multiple of 32"
                           : "MatMulQ8_0: K and N must be positive and K a multiple of 32");
  bool constant = true;
  for (size_t input = 1; input <= (Bits == 4 ? 3u : 2u); ++input) {
    int is_constant = 0;
    const OrtValue* value = nullptr;
    RETURN_IF_ERROR(api->KernelInfoGetConstantInput_tensor(info, input, &is_constant, &value));
    constant = constant && is_constant;
  }
  *state = new Kernel{k, n, constant};
  return nullptr;
}

void ORT_API_CALL Destroy(void* state) { delete static_cast<Kernel*>(state); }

}  // namespace

Op& MatMulQ4_1() {
  static Op op = MakeOp("MatMulQ4_1",
                        {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
                         ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT},
                        1, CreateKernel<4>, Compute<4>, Destroy);
  return op;
}

Op& MatMulQ8_0() {
  static Op op = MakeOp("MatMulQ8_0",
                        {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
                         ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT},
                        1, CreateKernel<8>, Compute<8>, Destroy);
  return op;
}

}  // namespace marquee
