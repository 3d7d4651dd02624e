// Perceptual near-duplicate detection: a 64-bit difference hash and a nearest-neighbour search by Hamming distance.
#include <vector>

#include "area_resize.hpp"
#include "kernels.hpp"

namespace atelier {

uint64_t dhash64(const Image& f) {
  // Luma area-resized (exactly, see area_resize.hpp) to 9 x 8 cells; all cells share the denominator h w, so
  // comparing integer numerators compares the cell means with no rounding at all.
  const AxisWeights wy = area_weights(f.h, 8), wx = area_weights(f.w, 9);
  std::vector<uint8_t> luma(static_cast<size_t>(f.w));
  auto row = [&](int64_t j) -> const uint8_t* {
    const uint8_t* r = f.data + j * f.sy;
    for (int64_t x = 0; x < f.w; ++x) {
      const uint8_t* p = r + x * f.sx;
      luma[x] = f.c == 1 ? p[0] : static_cast<uint8_t>(luma_bgr(p[0], p[f.sc], p[2 * f.sc]));
    }
    return luma.data();
  };
  uint64_t hash = 0;
  area_resize<1>(f.w, wy, wx, row, [&](int64_t r, const uint64_t* s) {
    for (int c = 0; c < 8; ++c)
      if (s[c] < s[c + 1]) hash |= uint64_t{1} << (63 - (8 * r + c));
  });
  return hash;
}

namespace {

// Runtime dispatch: the POPCNT instruction where the CPU has it, the portable bit trick elsewhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("popcnt", "default")))
#endif
std::pair<int64_t, int> nearest(uint64_t h, const char* table, int64_t n, ptrdiff_t stride) {
  int64_t best = 0;
  int best_d = 65;
  for (int64_t i = 0; i < n; ++i) {
    const int d = __builtin_popcountll(h ^ load<uint64_t>(table + i * stride));
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return {best, best_d};
}

}  // namespace

std::pair<int64_t, int> hamming_nearest(uint64_t h, const char* table, int64_t n, ptrdiff_t stride) {
  return nearest(h, table, n, stride);
}

}  // namespace atelier
