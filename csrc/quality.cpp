// Capture-quality metrics on luma: sharpness (variance of the Laplacian) and exposure.
#include <algorithm>
#include <vector>

#include "kernels.hpp"

namespace atelier {

namespace {

// Luma of row j (BGR or grayscale) into `dst`.
template <class T>
void luma_row(const Image& f, int64_t j, T* dst) {
  const uint8_t* r = f.data + j * f.sy;
  if (f.c == 1) {
    for (int64_t x = 0; x < f.w; ++x) dst[x] = static_cast<T>(r[x * f.sx]);
  } else {
    for (int64_t x = 0; x < f.w; ++x) {
      const uint8_t* p = r + x * f.sx;
      dst[x] = static_cast<T>(luma_bgr(p[0], p[f.sc], p[2 * f.sc]));
    }
  }
}

}  // namespace

double sharpness(const Image& f) {
  if (f.h < 3 || f.w < 3) return 0.0;
  // Laplacian L = up + down + left + right - 4 centre on the interior, |L| <= 1020. Sums are exact integers:
  // S2 <= 1020^2 * 2^32 < 2^63, and n S2 - S1^2 needs 128 bits.
  std::vector<int32_t> rows(static_cast<size_t>(3 * f.w));
  int32_t* prev = rows.data();
  int32_t* cur = prev + f.w;
  int32_t* next = cur + f.w;
  luma_row(f, 0, prev);
  luma_row(f, 1, cur);
  int64_t s1 = 0, s2 = 0;
  for (int64_t y = 1; y + 1 < f.h; ++y) {
    luma_row(f, y + 1, next);
    for (int64_t x = 1; x + 1 < f.w; ++x) {
      const int64_t lap = prev[x] + next[x] + cur[x - 1] + cur[x + 1] - 4 * cur[x];
      s1 += lap;
      s2 += lap * lap;
    }
    std::swap(prev, cur);
    std::swap(cur, next);
  }
  const __int128 n = static_cast<__int128>(f.h - 2) * (f.w - 2);
  const __int128 num = n * s2 - static_cast<__int128>(s1) * s1;  // n^2 variance, exact
  return static_cast<double>(num) / (static_cast<double>(n) * static_cast<double>(n));
}

ExposureStats exposure(const Image& f, int dark_max, int bright_min) {
  std::vector<uint8_t> row(static_cast<size_t>(f.w));
  uint64_t sum = 0, dark = 0, bright = 0;
  for (int64_t y = 0; y < f.h; ++y) {
    luma_row(f, y, row.data());
    for (int64_t x = 0; x < f.w; ++x) {
      const int v = row[x];
      sum += static_cast<uint64_t>(v);
      dark += v <= dark_max;
      bright += v >= bright_min;
    }
  }
  const double n = static_cast<double>(f.h) * static_cast<double>(f.w);
  return {static_cast<double>(sum) / n, static_cast<double>(dark) / n, static_cast<double>(bright) / n};
}

}  // namespace atelier
