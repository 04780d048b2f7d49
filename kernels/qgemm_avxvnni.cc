// AVX-VNNI variant of the AVX2 int8-activation kernel (compiled with -mavxvnni; used when the
// CPU has AVX-VNNI, i.e. vpdpbusd on 256-bit registers without AVX-512).
#include "i8_avx2_impl.h"

namespace llmq::kernels {

void gemm_i8_avxvnni(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                     int64_t p0, int64_t p1, float* y) {
  avx2_i8::gemm_i8<true>(w, xq, xqsum, sx, n, p0, p1, y);
}

GemmI8Fn avxvnni_gemm_i8() { return gemm_i8_avxvnni; }

}  // namespace llmq::kernels
