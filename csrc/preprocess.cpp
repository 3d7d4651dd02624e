// Camera frame -> model input: crop, exact area resize, BGR -> RGB, scale to [-1, 1] or quantize to int8.
#include <cmath>

#include "area_resize.hpp"
#include "kernels.hpp"

namespace atelier {

namespace {

// Round half to even without a libm call (SSE2 has no rounding instruction): adding 1.5 * 2^52 leaves no
// fraction bits for |t| < 2^51, so the FPU's default round-to-nearest-even does the rounding, exactly as np.rint.
inline double rint_small(double t) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (t + kMagic) - kMagic;
}

}  // namespace

void preprocess_frame(const Image& f, int64_t size, bool center_crop, OutKind kind, double scale, int zero_point,
                      void* out) {
  int64_t y0 = 0, x0 = 0, h = f.h, w = f.w;
  if (center_crop) {
    const int64_t side = std::min(f.h, f.w);
    y0 = (f.h - side) / 2;
    x0 = (f.w - side) / 2;
    h = w = side;
  }
  const uint8_t* base = f.data + y0 * f.sy + x0 * f.sx;
  const AxisWeights wy = area_weights(h, size), wx = area_weights(w, size);
  // v = numerator / (h w) is the area mean in [0, 255]; x = v / 127.5 - 1. The reference computes the same
  // double expression, so float outputs agree to the bit and int8 ones to the rounding of x / scale.
  const double inv = 1.0 / (static_cast<double>(h * w) * 127.5);
  RowReader reader(base, w, 3, f.sy, f.sx, f.sc);
  if (kind == OutKind::kFloat32) {
    float* o = static_cast<float*>(out);
    area_resize<3>(w, wy, wx, reader, [&](int64_t oy, const double* s) {
      float* row = o + oy * size * 3;
      for (int64_t ox = 0; ox < size; ++ox, s += 3, row += 3) {
        row[0] = static_cast<float>(s[2] * inv - 1.0);  // R
        row[1] = static_cast<float>(s[1] * inv - 1.0);  // G
        row[2] = static_cast<float>(s[0] * inv - 1.0);  // B
      }
    });
  } else {
    int8_t* o = static_cast<int8_t*>(out);
    // q = round(x / scale) + zero_point clamped to int8. x / scale is clamped to +-1024 first (well outside the
    // int8 range) so that a tiny scale cannot overflow the rounding trick or the integer cast.
    auto quantize = [&](double num) -> int8_t {
      double t = (num * inv - 1.0) / scale;
      t = t > -1024.0 ? t : -1024.0;
      t = t < 1024.0 ? t : 1024.0;
      double q = rint_small(t) + zero_point;
      q = q > -128.0 ? q : -128.0;
      q = q < 127.0 ? q : 127.0;
      return static_cast<int8_t>(q);
    };
    area_resize<3>(w, wy, wx, reader, [&](int64_t oy, const double* s) {
      int8_t* row = o + oy * size * 3;
      for (int64_t ox = 0; ox < size; ++ox, s += 3, row += 3) {
        row[0] = quantize(s[2]);
        row[1] = quantize(s[1]);
        row[2] = quantize(s[0]);
      }
    });
  }
}

}  // namespace atelier
