// Registration of Marquee's custom ops (domain "marquee") and what they share.
#include "ops.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace marquee {

const OrtApi* api = nullptr;

bool UsesAvx512() {
#ifdef MARQUEE_AVX512
  static const bool avx512 = __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("fma") &&
                             std::getenv("MARQUEE_KERNELS_PORTABLE") == nullptr;
  return avx512;
#else
  return false;
#endif
}

bool UsesAmx() {
#if defined(MARQUEE_AMX) && defined(__linux__)
  static const bool amx = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!UsesAvx512() || !__builtin_cpu_supports("avx512bw") ||
        std::getenv("MARQUEE_KERNELS_NO_AMX") != nullptr ||
        !__get_cpuid_count(7, 0, &a, &b, &c, &d))
      return false;
    const bool tiles = (d >> 24) & 1, bf16 = (d >> 22) & 1;
    // Linux hands out the 8 KB tile state only to processes that ask (ARCH_REQ_XCOMP_PERM
    // for XFEATURE_XTILEDATA).
    return tiles && bf16 && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  }();
  return amx;
#else
  return false;
#endif
}

OrtStatus* Error(const char* message) { return api->CreateStatus(ORT_INVALID_ARGUMENT, message); }

OrtStatus* Input(OrtKernelContext* context, size_t index, std::vector<int64_t>* shape,
                 const void** data) {
  const OrtValue* value = nullptr;
  RETURN_IF_ERROR(api->KernelContext_GetInput(context, index, &value));
  OrtTensorTypeAndShapeInfo* info = nullptr;
  RETURN_IF_ERROR(api->GetTensorTypeAndShape(value, &info));
  size_t rank = 0;
  OrtStatus* status = api->GetDimensionsCount(info, &rank);
  if (!status) {
    shape->resize(rank);
    status = api->GetDimensions(info, shape->data(), rank);
  }
  api->ReleaseTensorTypeAndShapeInfo(info);
  if (status) return status;
  return api->GetTensorData(value, data);
}

OrtStatus* Output(OrtKernelContext* context, size_t index, const std::vector<int64_t>& shape,
                  float** data) {
  OrtValue* value = nullptr;
  RETURN_IF_ERROR(api->KernelContext_GetOutput(context, index, shape.data(), shape.size(), &value));
  return api->GetTensorMutableData(value, reinterpret_cast<void**>(data));
}

namespace {

const Op& Of(const OrtCustomOp* op) { return *static_cast<const Op*>(op); }
const char* ORT_API_CALL Name(const OrtCustomOp* op) { return Of(op).name; }
const char* ORT_API_CALL Provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
size_t ORT_API_CALL InputCount(const OrtCustomOp* op) { return Of(op).inputs.size(); }
size_t ORT_API_CALL OutputCount(const OrtCustomOp* op) { return Of(op).outputs; }
ONNXTensorElementDataType ORT_API_CALL InputType(const OrtCustomOp* op, size_t index) {
  return Of(op).inputs[index];
}
ONNXTensorElementDataType ORT_API_CALL OutputType(const OrtCustomOp*, size_t) {
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
OrtCustomOpInputOutputCharacteristic ORT_API_CALL Required(const OrtCustomOp*, size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
OrtMemType ORT_API_CALL MemoryType(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL One(const OrtCustomOp*) { return 1; }
int ORT_API_CALL Latest(const OrtCustomOp*) { return 1 << 30; }

}  // namespace

Op MakeOp(const char* name, std::vector<ONNXTensorElementDataType> inputs, size_t outputs,
          CreateFn create, ComputeFn compute, DestroyFn destroy) {
  Op op;
  std::memset(static_cast<OrtCustomOp*>(&op), 0, sizeof(OrtCustomOp));
  op.version = kApiVersion;
  op.GetName = Name;
  op.GetExecutionProviderType = Provider;
  op.GetInputType = InputType;
  op.GetInputTypeCount = InputCount;
  op.GetOutputType = OutputType;
  op.GetOutputTypeCount = OutputCount;
  op.GetInputCharacteristic = Required;
  op.GetOutputCharacteristic = Required;
  op.GetInputMemoryType = MemoryType;
  op.GetVariadicInputHomogeneity = One;
  op.GetVariadicOutputHomogeneity = One;
  op.GetVariadicInputMinArity = One;
  op.GetVariadicOutputMinArity = One;
  op.CreateKernelV2 = create;
  op.KernelComputeV2 = compute;
  op.KernelDestroy = destroy;
  op.GetStartVersion = One;
  op.GetEndVersion = Latest;
  op.name = name;
  op.inputs = std::move(inputs);
  op.outputs = outputs;
  return op;
}

}  // namespace marquee

using marquee::api;

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  api = base->GetApi(marquee::kApiVersion);
  if (api == nullptr)
    return base->GetApi(1)->CreateStatus(ORT_FAIL, "Marquee's kernels need onnxruntime 1.17 or newer");
  OrtCustomOpDomain* domain = nullptr;
  RETURN_IF_ERROR(api->CreateCustomOpDomain("marquee", &domain));
  RETURN_IF_ERROR(api->CustomOpDomain_Add(domain, &marquee::MatMulQ4_1()));
  RETURN_IF_ERROR(api->CustomOpDomain_Add(domain, &marquee::MatMulQ8_0()));
  RETURN_IF_ERROR(api->CustomOpDomain_Add(domain, &marquee::CachedAttention()));
  RETURN_IF_ERROR(api->CustomOpDomain_Add(domain, &marquee::SwiGLU()));
  return api->AddCustomOpDomain(options, domain);
}

// Which path this CPU runs ("avx512+amx", "avx512" or "portable"), for tests and
// `marquee model info`.
extern "C" __attribute__((visibility("default"))) const char* MarqueeKernelPath() {
  if (marquee::UsesAmx()) return "avx512+amx";
  return marquee::UsesAvx512() ? "avx512" : "portable";
}
