// CachedAttention: rotary embedding and grouped-query attention over a KV cache, for
// decoders whose rows are left-padded (an additive bias hides the padding and the future).
//
//   q, k = rope(qkv's query and key heads, position_ids); v = qkv's value heads
//   present_k = concat(past_k, k) along the sequence (likewise V), and for query head h
//   out[b, s, h] = softmax_t(scale * q[b, s, h] . present_k[b, h / G, t] + bias[b, 0, s, t])
//                  @ present_v[b, h / G]                      (G = num_heads / kv_num_heads)
//
// Inputs: QKV [B, S, (H + 2 KV) * D] (one projection's output: H query heads, then KV key
// heads, then KV value heads), past K and V [B, KV, P, D], bias [B, 1, S, T] with
// T = P + S, position_ids int64 [B, S], cos and sin [max positions, D/2] (Hugging Face's
// rotate-half rotary embedding: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin over the two
// halves of each head). Outputs: the context [B, S, H*D], present K and V [B, KV, T, D].
// Attributes: num_heads, kv_num_heads, scale (0 or absent: 1/sqrt(D)).
//
// A preallocated cache: past K and V may instead be buffers of C >= T positions of which
// the first T - S are valid. Present K and V are then [B, KV, C, D], the past with the new
// positions written at T - S; bound to the same memory as the past (IOBinding), that is an
// append in place, and nothing else is copied.
//
// onnxruntime's CPU GroupQueryAttention makes a GEMM call per head and query and, without
// a shared buffer, zeroes each present buffer and copies a KV head's past once per query
// head that reads it. It also takes each row's positions from its length, which is wrong
// for left-padded rows, so the graph needed a Split and two RotaryEmbedding nodes a layer
// before it. Here one node does it all: each KV head's cache is copied once (around the
// caches) or not at all, and each query streams over the keys and values (dot products, a
// vectorized exp, the weighted sum of values), skipping keys the bias masks out.
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "ops.h"

namespace marquee {
namespace {

// Queries per task: a prompt's queries are spread over threads too.
constexpr int64_t kQueriesPerTask = 16;
// A bias at or below this masks its key (the graph uses float32's minimum).
constexpr float kMasked = -1e30f;
// Head sizes the AVX-512 path keeps in registers (16 vectors).
constexpr int64_t kMaxVectors = 16;

struct Problem {
  const float *qkv, *past_k, *past_v, *bias, *cos, *sin;
  const int64_t* positions;
  float *out, *present_k, *present_v;
  int64_t batch, seq, heads, kv_heads, dim, group, chunks, max_position;
  // Positions: T (`total`), the valid cached ones (T - S), and per head in the past and
  // present buffers.
  int64_t total, cached, past_capacity, present_capacity;
  float scale;
  // Set by a task that could not allocate its scratch (exceptions must not cross the C API).
  mutable std::atomic<bool> failed{false};
};

// Head `head` of QKV row (b, s) (query heads first, then key, then value heads).
const float* Head(const Problem& p, int64_t b, int64_t s, int64_t head) {
  return p.qkv + ((b * p.seq + s) * (p.heads + 2 * p.kv_heads) + head) * p.dim;
}

// Rotate-half rotary embedding of one head at `position` into `out`.
void Rope(const Problem& p, const float* x, int64_t position, float* out) {
  const int64_t half = p.dim / 2;
  const float* cos = p.cos + position * half;
  const float* sin = p.sin + position * half;
  for (int64_t i = 0; i < half; ++i) {
    out[i] = x[i] * cos[i] - x[i + half] * sin[i];
    out[i + half] = x[i + half] * cos[i] + x[i] * sin[i];
  }
}

#ifdef MARQUEE_AVX512
// Copies with non-temporal stores: the present cache is read again only at the next step,
// from memory, so writing around the caches saves reading each line before writing it.
__attribute__((target("avx512f"))) void StreamAvx512(float* to, const float* from, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(to + i, _mm512_loadu_ps(from + i));
  for (; i < n; ++i) to[i] = from[i];
}
#endif

void Copy(float* to, const float* from, int64_t n) {
#ifdef MARQUEE_AVX512
  if (UsesAvx512() && reinterpret_cast<uintptr_t>(to) % 64 == 0) return StreamAvx512(to, from, n);
#endif
  std::memcpy(to, from, size_t(n) * sizeof(float));
}

// Phase 1, one task per (batch row, KV head): the past (unless it is the present buffer),
// then the new keys (rotated) and values.
void AppendTask(void* data, size_t task) {
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t b = int64_t(task) / p.kv_heads, h = int64_t(task) % p.kv_heads;
  const int64_t head = b * p.kv_heads + h;
  const float* pasts[2] = {p.past_k, p.past_v};
  float* presents[2] = {p.present_k, p.present_v};
  for (int which = 0; which < 2; ++which) {
    float* present = presents[which] + head * p.present_capacity * p.dim;
    const float* past = pasts[which] + head * p.past_capacity * p.dim;
    if (present != past) {  // all but the new positions, which come next
      Copy(present, past, p.cached * p.dim);
      if (p.past_capacity > p.total)
        Copy(present + p.total * p.dim, past + p.total * p.dim,
             (p.past_capacity - p.total) * p.dim);
    }
    // The new positions with ordinary stores: phase 2 reads them back at once.
    for (int64_t s = 0; s < p.seq; ++s) {
      const float* now = Head(p, b, s, p.heads + which * p.kv_heads + h);
      float* to = present + (p.cached + s) * p.dim;
      if (which == 0)
        Rope(p, now, p.positions[b * p.seq + s], to);
      else
        std::memcpy(to, now, size_t(p.dim) * sizeof(float));
    }
  }
#ifdef MARQUEE_AVX512
  if (UsesAvx512()) _mm_sfence();
#endif
}

// A KV head's keys or values as phase 2 reads them: the past input, then the new positions
// in the present buffer (the rest of which was written around the caches).
struct Rows {
  const float* past;
  const float* now;
  int64_t past_rows, dim;
  const float* operator[](int64_t t) const {
    return t < past_rows ? past + t * dim : now + (t - past_rows) * dim;
  }
};

// One query row: q [D], T keys and values, bias [T]; scores is scratch of T (+ 16).
void RowGeneric(const Problem& p, const float* q, const Rows& keys, const Rows& values,
                const float* bias, float* scores, float* out) {
  float max = -FLT_MAX;
  for (int64_t t = 0; t < p.total; ++t) {
    float score = bias[t];
    if (score > kMasked) {
      float dot = 0.f;
      for (int64_t i = 0; i < p.dim; ++i) dot += q[i] * keys[t][i];
      score += p.scale * dot;
    }
    scores[t] = score;
    max = std::max(max, score);
  }
  float sum = 0.f;
  for (int64_t t = 0; t < p.total; ++t) sum += scores[t] = std::exp(scores[t] - max);
  std::fill(out, out + p.dim, 0.f);
  for (int64_t t = 0; t < p.total; ++t)
    if (scores[t] != 0.f)
      for (int64_t i = 0; i < p.dim; ++i) out[i] += scores[t] * values[t][i];
  for (int64_t i = 0; i < p.dim; ++i) out[i] /= sum;
}

#ifdef MARQUEE_AVX512
// NV vectors of 16 per head (the last one masked by `tail`).
template <int NV>
__attribute__((target("avx512f,fma"))) void RowAvx512(const Problem& p, const float* q,
                                                       const Rows& keys, const Rows& values,
                                                       const float* bias, float* scores,
                                                       float* out, __mmask16 tail) {
  auto mask = [tail](int i) { return i == NV - 1 ? tail : __mmask16(0xFFFF); };
  __m512 qv[NV];
  for (int i = 0; i < NV; ++i)
    qv[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(i), q + 16 * i), _mm512_set1_ps(p.scale));
  float max = -FLT_MAX;
  for (int64_t t = 0; t < p.total; ++t) {
    float score = bias[t];
    if (score > kMasked) {
      const float* key = keys[t];
      __m512 acc = _mm512_mul_ps(qv[0], _mm512_maskz_loadu_ps(mask(0), key));
      for (int i = 1; i < NV; ++i)
        acc = _mm512_fmadd_ps(qv[i], _mm512_maskz_loadu_ps(mask(i), key + 16 * i), acc);
      score += _mm512_reduce_add_ps(acc);
    }
    scores[t] = score;
    max = std::max(max, score);
  }
  const __m512 top = _mm512_set1_ps(max);
  __m512 sums = _mm512_setzero_ps();
  for (int64_t t = 0; t < p.total; t += 16) {
    const __mmask16 m = p.total - t >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (p.total - t)) - 1);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + t), top));
    _mm512_mask_storeu_ps(scores + t, m, e);
    sums = _mm512_add_ps(sums, _mm512_maskz_mov_ps(m, e));
  }
  __m512 acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t t = 0; t < p.total; ++t) {
    if (scores[t] == 0.f) continue;
    const __m512 weight = _mm512_set1_ps(scores[t]);
    const float* value = values[t];
    for (int i = 0; i < NV; ++i)
      acc[i] = _mm512_fmadd_ps(weight, _mm512_maskz_loadu_ps(mask(i), value + 16 * i), acc[i]);
  }
  const __m512 inverse = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sums));
  for (int i = 0; i < NV; ++i) _mm512_mask_storeu_ps(out + 16 * i, mask(i), _mm512_mul_ps(acc[i], inverse));
}

template <int... NV>
__attribute__((target("avx512f,fma"))) void DispatchAvx512(
    const Problem& p, const float* q, const Rows& keys, const Rows& values, const float* bias,
    float* scores, float* out, std::integer_sequence<int, NV...>) {
  const int64_t vectors = (p.dim + 15) / 16;
  const int rest = int(p.dim % 16);
  const __mmask16 tail = rest ? __mmask16((1u << rest) - 1) : __mmask16(0xFFFF);
  ((vectors == NV + 1 ? RowAvx512<NV + 1>(p, q, keys, values, bias, scores, out, tail) : void()),
   ...);
}
#endif

// Phase 2, one task per (batch row, query head, chunk of queries).
void AttendTask(void* data, size_t task) {
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t chunk = int64_t(task) % p.chunks, bh = int64_t(task) / p.chunks;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int64_t kv = b * p.kv_heads + h / p.group;
  const int64_t past = kv * p.past_capacity * p.dim;
  const int64_t now = (kv * p.present_capacity + p.cached) * p.dim;
  const Rows keys{p.past_k + past, p.present_k + now, p.cached, p.dim};
  const Rows values{p.past_v + past, p.present_v + now, p.cached, p.dim};
  const int64_t s0 = chunk * kQueriesPerTask, s1 = std::min(p.seq, s0 + kQueriesPerTask);
  try {
    std::vector<float> scores(size_t(p.total) + 16), q(size_t(p.dim));
    for (int64_t s = s0; s < s1; ++s) {
      Rope(p, Head(p, b, s, h), p.positions[b * p.seq + s], q.data());
      float* out = p.out + ((b * p.seq + s) * p.heads + h) * p.dim;
      const float* bias = p.bias + (b * p.seq + s) * p.total;
#ifdef MARQUEE_AVX512
      if (UsesAvx512() && p.dim <= 16 * kMaxVectors) {
        DispatchAvx512(p, q.data(), keys, values, bias, scores.data(), out,
                       std::make_integer_sequence<int, kMaxVectors>{});
        continue;
      }
#endif
      RowGeneric(p, q.data(), keys, values, bias, scores.data(), out);
    }
  } catch (const std::bad_alloc&) {
    p.failed = true;
  }
}

// A decode step (one new position), one task per (batch row, KV head): phase 1, then
// phase 2 for the query heads that read this KV head. One round of tasks instead of two:
// at batch 1 the second round's wake-up cost more than its work.
void DecodeTask(void* data, size_t task) {
  AppendTask(data, task);
  const Problem& p = *static_cast<const Problem*>(data);
  const int64_t b = int64_t(task) / p.kv_heads, kv = int64_t(task) % p.kv_heads;
  for (int64_t h = kv * p.group; h < (kv + 1) * p.group; ++h)
    AttendTask(data, size_t(b * p.heads + h));  // one chunk per head: `chunks` is 1
}

struct Kernel {
  int64_t heads, kv_heads;
  float scale;
};

OrtStatus* ORT_API_CALL Compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<Kernel*>(state);
  std::vector<int64_t> qkvs, pks, pvs, bs, ps, cs, ss;
  Problem p{};
  RETURN_IF_ERROR(Input(context, 0, &qkvs, reinterpret_cast<const void**>(&p.qkv)));
  RETURN_IF_ERROR(Input(context, 1, &pks, reinterpret_cast<const void**>(&p.past_k)));
  RETURN_IF_ERROR(Input(context, 2, &pvs, reinterpret_cast<const void**>(&p.past_v)));
  RETURN_IF_ERROR(Input(context, 3, &bs, reinterpret_cast<const void**>(&p.bias)));
  RETURN_IF_ERROR(Input(context, 4, &ps, reinterpret_cast<const void**>(&p.positions)));
  RETURN_IF_ERROR(Input(context, 5, &cs, reinterpret_cast<const void**>(&p.cos)));
  RETURN_IF_ERROR(Input(context, 6, &ss, reinterpret_cast<const void**>(&p.sin)));
  p.heads = kernel.heads;
  p.kv_heads = kernel.kv_heads;
  p.group = p.heads / p.kv_heads;
  const int64_t heads = p.heads + 2 * p.kv_heads;
  if (qkvs.size() != 3 || qkvs[2] % heads != 0 || qkvs[2] == 0 || qkvs[2] / heads % 2 != 0)
    return Error("CachedAttention: QKV must be [B, S, (num_heads + 2 kv_num_heads) * head_size], head_size even");
  p.batch = qkvs[0];
  p.seq = qkvs[1];
  p.dim = qkvs[2] / heads;
  if (pks.size() != 4 || pks != pvs || pks[0] != p.batch || pks[1] != p.kv_heads ||
      pks[3] != p.dim)
    return Error("CachedAttention: past K and V must be [B, kv_num_heads, P, head_size]");
  if (bs.size() != 4 || bs[0] != p.batch || bs[1] != 1 || bs[2] != p.seq || bs[3] < p.seq)
    return Error("CachedAttention: the bias must be [B, 1, S, T] (T: cached and new positions)");
  if (ps != std::vector<int64_t>{p.batch, p.seq})
    return Error("CachedAttention: position_ids must be [B, S]");
  if (cs.size() != 2 || cs != ss || cs[1] != p.dim / 2)
    return Error("CachedAttention: cos and sin must be [max positions, head_size / 2]");
  p.max_position = cs[0];
  for (int64_t i = 0; i < p.batch * p.seq; ++i)
    if (p.positions[i] < 0 || p.positions[i] >= p.max_position)
      return Error("CachedAttention: a position is outside the rotary tables (the context length)");
  p.total = bs[3];
  p.cached = p.total - p.seq;
  p.past_capacity = pks[2];
  if (p.past_capacity != p.cached && p.past_capacity < p.total)
    return Error("CachedAttention: past K and V must hold T - S positions, or be buffers of T or more");
  p.present_capacity = p.past_capacity == p.cached ? p.total : p.past_capacity;
  p.scale = kernel.scale != 0.f ? kernel.scale : 1.f / std::sqrt(float(p.dim));
  RETURN_IF_ERROR(Output(context, 0, {p.batch, p.seq, p.heads * p.dim}, &p.out));
  const std::vector<int64_t> present{p.batch, p.kv_heads, p.present_capacity, p.dim};
  RETURN_IF_ERROR(Output(context, 1, present, &p.present_k));
  RETURN_IF_ERROR(Output(context, 2, present, &p.present_v));
  if (p.batch == 0 || p.present_capacity == 0) return nullptr;
  p.chunks = (p.seq + kQueriesPerTask - 1) / kQueriesPerTask;
  const size_t kv_tasks = size_t(p.batch * p.kv_heads);
  if (p.seq == 1) {
    RETURN_IF_ERROR(api->KernelContext_ParallelFor(context, DecodeTask, kv_tasks, 0, &p));
  } else {
    RETURN_IF_ERROR(api->KernelContext_ParallelFor(context, AppendTask, kv_tasks, 0, &p));
    if (p.seq > 0)
      RETURN_IF_ERROR(api->KernelContext_ParallelFor(
          context, AttendTask, size_t(p.batch * p.heads * p.chunks), 0, &p));
  }
  if (p.failed) return api->CreateStatus(ORT_FAIL, "CachedAttention: out of memory");
  return nullptr;
}

OrtStatus* ORT_API_CALL CreateKernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info,
                                     void** state) {
  int64_t heads = 0, kv_heads = 0;
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "num_heads", &heads));
  RETURN_IF_ERROR(api->KernelInfoGetAttribute_int64(info, "kv_num_heads", &kv_heads));
  if (heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0)
    return Error("CachedAttention: num_heads must be a positive multiple of kv_num_heads");
  float scale = 0.f;
  if (OrtStatus* status = api->KernelInfoGetAttribute_float(info, "scale", &scale)) {
    api->ReleaseStatus(status);  // absent: 1/sqrt(head_size)
    scale = 0.f;
  }
  *state = new Kernel{heads, kv_heads, scale};
  return nullptr;
}

void ORT_API_CALL Destroy(void* state) { delete static_cast<Kernel*>(state); }

}  // namespace

Op& CachedAttention() {
  constexpr auto kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  static Op op = MakeOp("CachedAttention",
                        {kFloat, kFloat, kFloat, kFloat, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                         kFloat, kFloat},
                        3, CreateKernel, Compute, Destroy);
  return op;
}

}  // namespace marquee
