// The kiosk kernels as plain C++ over strided uint8/float views: no Python, no pybind11.
// module.cpp validates every argument, allocates the outputs, releases the GIL and calls these; every function here
// trusts its arguments. Each kernel has a NumPy twin in edge/kernels_ref.py that the tests hold it to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace atelier {

// BT.601 luma with integer weights that sum to 256: Y = (77 R + 150 G + 29 B + 128) >> 8, exact in [0, 255].
// edge/kernels_ref.py uses the same constants.
inline constexpr uint32_t kLumaR = 77, kLumaG = 150, kLumaB = 29;

inline uint32_t luma_bgr(uint32_t b, uint32_t g, uint32_t r) {
  return (kLumaR * r + kLumaG * g + kLumaB * b + 128u) >> 8;
}

// Loads a T from a byte address that may not be aligned for T (numpy allows unaligned views).
template <class T>
inline T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// An H x W x C uint8 image (C = 1 or 3), strides in bytes and of any sign.
struct Image {
  const uint8_t* data;
  int64_t h, w, c;
  ptrdiff_t sy, sx, sc;
};

// An N x H x W x 3 array of float32, int8 or uint8, strides in bytes and of any sign.
struct Batch {
  const char* data;
  int64_t n, h, w;
  ptrdiff_t sn, sy, sx, sc;
};

enum class OutKind { kFloat32, kInt8 };

// Centre-square (or full) crop -> exact area resize to size x size -> BGR to RGB -> float32 x = v / 127.5 - 1 or
// int8 q = round(x / scale) + zero_point. `out` holds size * size * 3 elements, row-major.
void preprocess_frame(const Image& frame, int64_t size, bool center_crop, OutKind kind, double scale,
                      int zero_point, void* out);

// round((x + 1) * 127.5) clamped to [0, 255]; NaN maps to 0. `out` is N x H x W x 3 contiguous.
void postprocess_float(const Batch& batch, uint8_t* out);
// The same through x = (q - zero_point) * scale.
void postprocess_int8(const Batch& batch, double scale, int zero_point, uint8_t* out);

// Lays images (uint8) out row-major on a grid of `cols` columns, `pad` px around and between them.
void tile(const Batch& images, int64_t cols, int64_t pad, const uint8_t background[3], uint8_t* out);

// Integer-factor enlargement: nearest neighbour or bilinear (half-pixel centres, edge clamped, exact rounding).
void upscale_nearest(const Image& image, int64_t factor, uint8_t* out);
void upscale_bilinear(const Image& image, int64_t factor, uint8_t* out);

// Variance of the 4-neighbour Laplacian of luma over the interior pixels; 0 when the frame has no interior.
double sharpness(const Image& frame);

struct ExposureStats {
  double mean_luma, dark_fraction, bright_fraction;
};
// Mean luma, share of pixels with luma <= dark_max, share with luma >= bright_min.
ExposureStats exposure(const Image& frame, int dark_max, int bright_min);

// 64-bit difference hash of luma area-resized to 9 x 8: bit 63 - (8 r + c) is set when cell (r, c) is darker
// than cell (r, c + 1).
uint64_t dhash64(const Image& frame);

// (first index of the smallest Hamming distance to h, that distance) over n uint64 values `stride` bytes apart.
std::pair<int64_t, int> hamming_nearest(uint64_t h, const char* table, int64_t n, ptrdiff_t stride);

}  // namespace atelier
