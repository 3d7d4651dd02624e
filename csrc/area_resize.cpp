// The inner loops of the area resize, with runtime dispatch: the wheel targets baseline x86-64 (SSE2), and GCC's
// target_clones adds an AVX2 copy of each that an ifunc picks on CPUs that have it (no -march=native needed).
#include "area_resize.hpp"

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ATELIER_DISPATCH __attribute__((target_clones("avx2", "default")))
#else
#define ATELIER_DISPATCH
#endif

namespace atelier {

namespace {
typedef int32_t V4i __attribute__((vector_size(16)));
typedef double V4d __attribute__((vector_size(32)));
}  // namespace

ATELIER_DISPATCH
void accumulate_row(uint32_t* __restrict acc, const uint8_t* __restrict row, uint32_t w, int64_t len, bool first) {
  if (first) {
    for (int64_t k = 0; k < len; ++k) acc[k] = w * row[k];
  } else {
    for (int64_t k = 0; k < len; ++k) acc[k] += w * row[k];
  }
}

ATELIER_DISPATCH
void add_row_u16(uint16_t* __restrict sum, const uint8_t* __restrict row, int64_t len, bool first) {
  if (first) {
    for (int64_t k = 0; k < len; ++k) sum[k] = row[k];
  } else {
    for (int64_t k = 0; k < len; ++k) sum[k] = static_cast<uint16_t>(sum[k] + row[k]);
  }
}

ATELIER_DISPATCH
void scale_u16(uint32_t* __restrict acc, const uint16_t* __restrict sum, uint32_t w, int64_t len) {
  for (int64_t k = 0; k < len; ++k) acc[k] = w * sum[k];
}

ATELIER_DISPATCH
void horizontal_bgr(const uint32_t* acc, const AxisWeights& wx, double* out) {
  const int64_t out_w = static_cast<int64_t>(wx.first.size());
  const uint32_t* weight = wx.weight.data();
  for (int64_t ox = 0; ox < out_w; ++ox) {
    // Two accumulators, so that consecutive taps do not wait on each other's add (latency, not throughput, bounds
    // this loop); the sums stay exact integers, so the order does not change the result.
    V4d s = {0.0, 0.0, 0.0, 0.0}, s1 = s;
    const uint32_t* a = acc + wx.first[ox] * 3;
    int64_t t = wx.begin[ox];
    const int64_t e = wx.begin[ox + 1];
    for (; t + 1 < e; t += 2, a += 6) {
      V4i x0, x1;
      std::memcpy(&x0, a, sizeof x0);  // B, G, R and the next pixel's B (unused); acc < 2^31 fits int32
      std::memcpy(&x1, a + 3, sizeof x1);
      s += static_cast<double>(weight[t]) * __builtin_convertvector(x0, V4d);
      s1 += static_cast<double>(weight[t + 1]) * __builtin_convertvector(x1, V4d);
    }
    if (t < e) {
      V4i x0;
      std::memcpy(&x0, a, sizeof x0);
      s += static_cast<double>(weight[t]) * __builtin_convertvector(x0, V4d);
    }
    s += s1;
    out[3 * ox] = s[0];
    out[3 * ox + 1] = s[1];
    out[3 * ox + 2] = s[2];
  }
}

}  // namespace atelier
