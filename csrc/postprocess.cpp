// Generator output -> displayable uint8 RGB: dequantize/rescale, tile into a grid, enlarge for the screen.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

namespace atelier {

namespace {

// x in [-1, 1] -> round((x + 1) * 127.5) in [0, 255], half to even like np.rint; NaN -> 0. Clamping first keeps
// the magic-number rounding (1.5 * 2^23: no fraction bits left) exact and the cast defined.
inline uint8_t to_u8(float x) {
  float v = (x + 1.0f) * 127.5f;
  v = v > 0.0f ? v : 0.0f;  // also maps NaN to 0
  v = v < 255.0f ? v : 255.0f;
  constexpr float kMagic = 12582912.0f;
  return static_cast<uint8_t>(static_cast<int>((v + kMagic) - kMagic));
}

}  // namespace

void postprocess_float(const Batch& b, uint8_t* out) {
  const bool packed = b.sc == 4 && b.sx == 12;
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t y = 0; y < b.h; ++y) {
      const char* row = b.data + i * b.sn + y * b.sy;
      if (packed) {
        for (int64_t k = 0; k < b.w * 3; ++k) out[k] = to_u8(load<float>(row + 4 * k));
      } else {
        for (int64_t x = 0; x < b.w; ++x)
          for (int64_t c = 0; c < 3; ++c) out[x * 3 + c] = to_u8(load<float>(row + x * b.sx + c * b.sc));
      }
      out += b.w * 3;
    }
  }
}

void postprocess_int8(const Batch& b, double scale, int zero_point, uint8_t* out) {
  // 256 possible inputs: x = (q - zero_point) * scale, round((x + 1) * 127.5) in double, as the reference does.
  uint8_t lut[256];
  for (int q = -128; q < 128; ++q) {
    double v = ((static_cast<double>(q) - zero_point) * scale + 1.0) * 127.5;
    v = v > 0.0 ? v : 0.0;
    v = v < 255.0 ? v : 255.0;
    lut[q + 128] = static_cast<uint8_t>(static_cast<int>(std::nearbyint(v)));
  }
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t y = 0; y < b.h; ++y) {
      const char* row = b.data + i * b.sn + y * b.sy;
      for (int64_t x = 0; x < b.w; ++x)
        for (int64_t c = 0; c < 3; ++c)
          out[x * 3 + c] = lut[static_cast<int8_t>(row[x * b.sx + c * b.sc]) + 128];
      out += b.w * 3;
    }
  }
}

void tile(const Batch& b, int64_t cols, int64_t pad, const uint8_t bg[3], uint8_t* out) {
  const int64_t rows = (b.n + cols - 1) / cols;
  const int64_t out_w = cols * b.w + (cols + 1) * pad;
  const int64_t out_h = rows * b.h + (rows + 1) * pad;
  for (int64_t k = 0; k < out_w; ++k) std::memcpy(out + 3 * k, bg, 3);
  for (int64_t y = 1; y < out_h; ++y) std::memcpy(out + y * out_w * 3, out, static_cast<size_t>(out_w * 3));
  for (int64_t i = 0; i < b.n; ++i) {
    const int64_t top = pad + (i / cols) * (b.h + pad), left = pad + (i % cols) * (b.w + pad);
    for (int64_t y = 0; y < b.h; ++y) {
      const char* src = b.data + i * b.sn + y * b.sy;
      uint8_t* dst = out + ((top + y) * out_w + left) * 3;
      if (b.sc == 1 && b.sx == 3) {
        std::memcpy(dst, src, static_cast<size_t>(b.w * 3));
      } else {
        for (int64_t x = 0; x < b.w; ++x)
          for (int64_t c = 0; c < 3; ++c) dst[x * 3 + c] = static_cast<uint8_t>(src[x * b.sx + c * b.sc]);
      }
    }
  }
}

void upscale_nearest(const Image& im, int64_t f, uint8_t* out) {
  const int64_t ow = im.w * f, c = im.c;
  for (int64_t y = 0; y < im.h; ++y) {
    uint8_t* dst = out + y * f * ow * c;
    const uint8_t* src = im.data + y * im.sy;
    for (int64_t x = 0; x < im.w; ++x)
      for (int64_t k = 0; k < f; ++k)
        for (int64_t ch = 0; ch < c; ++ch) dst[(x * f + k) * c + ch] = src[x * im.sx + ch * im.sc];
    for (int64_t k = 1; k < f; ++k) std::memcpy(dst + k * ow * c, dst, static_cast<size_t>(ow * c));
  }
}

namespace {

// Bilinear taps of one axis for an integer factor f, in units of 1 / (2 f) source pixels: output d samples
// source position (d + 0.5) / f - 0.5, i.e. t = 2 d + 1 - f, clamped to [0, 2 f (L - 1)]. Weights sum to 2 f.
struct Taps {
  std::vector<int64_t> j0, j1;
  std::vector<uint32_t> w0, w1;
};

Taps bilinear_taps(int64_t len, int64_t f) {
  Taps t;
  const int64_t n = len * f, two_f = 2 * f, t_max = two_f * (len - 1);
  t.j0.resize(n), t.j1.resize(n), t.w0.resize(n), t.w1.resize(n);
  for (int64_t d = 0; d < n; ++d) {
    const int64_t pos = std::clamp<int64_t>(2 * d + 1 - f, 0, t_max);
    const int64_t j = pos / two_f, frac = pos % two_f;
    t.j0[d] = j;
    t.j1[d] = std::min(j + 1, len - 1);
    t.w0[d] = static_cast<uint32_t>(two_f - frac);
    t.w1[d] = static_cast<uint32_t>(frac);
  }
  return t;
}

}  // namespace

void upscale_bilinear(const Image& im, int64_t f, uint8_t* out) {
  const Taps ty = bilinear_taps(im.h, f), tx = bilinear_taps(im.w, f);
  const int64_t oh = im.h * f, ow = im.w * f, c = im.c;
  const uint32_t denom = static_cast<uint32_t>(4 * f * f), half = static_cast<uint32_t>(2 * f * f);
  std::vector<uint32_t> col(static_cast<size_t>(im.w * c));  // vertically interpolated row, x 2f
  for (int64_t y = 0; y < oh; ++y) {
    const uint8_t* r0 = im.data + ty.j0[y] * im.sy;
    const uint8_t* r1 = im.data + ty.j1[y] * im.sy;
    for (int64_t x = 0; x < im.w; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        const ptrdiff_t off = x * im.sx + ch * im.sc;
        col[x * c + ch] = ty.w0[y] * r0[off] + ty.w1[y] * r1[off];
      }
    uint8_t* dst = out + y * ow * c;
    for (int64_t x = 0; x < ow; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        const uint32_t num = tx.w0[x] * col[tx.j0[x] * c + ch] + tx.w1[x] * col[tx.j1[x] * c + ch];
        dst[x * c + ch] = static_cast<uint8_t>((num + half) / denom);  // round half up, exact
      }
  }
}

}  // namespace atelier
