// Exact area (box-filter) resampling, separable, in integers.
//
// Output pixel i of n covers source coordinates [i L / n, (i + 1) L / n). Scaled by n that is [i L, (i + 1) L),
// while source pixel j covers [j n, (j + 1) n): every overlap is an integer <= min(n, L), and the overlaps of one
// output pixel sum to L. A 2-D output value is therefore sum_y sum_x wy wx p / (Ly Lx), with an integer numerator
// that this file computes exactly (<= 255 * 65536 * 65536 < 2^64). This is cv2.INTER_AREA's general path for any
// ratio, upscaling included, without its float weights.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace atelier {

struct AxisWeights {
  std::vector<int64_t> first;    // first source index of each output pixel
  std::vector<int64_t> begin;    // output pixel i uses weight[begin[i] .. begin[i + 1]), n + 1 entries
  std::vector<uint32_t> weight;  // overlap lengths, in units of 1 / n source pixels
};

inline AxisWeights area_weights(int64_t src_len, int64_t dst_len) {
  AxisWeights a;
  a.first.resize(static_cast<size_t>(dst_len));
  a.begin.resize(static_cast<size_t>(dst_len) + 1);
  a.weight.reserve(static_cast<size_t>(src_len + dst_len));
  for (int64_t i = 0; i < dst_len; ++i) {
    const int64_t lo = i * src_len, hi = (i + 1) * src_len;
    const int64_t j0 = lo / dst_len, j1 = (hi + dst_len - 1) / dst_len;
    a.first[i] = j0;
    a.begin[i] = static_cast<int64_t>(a.weight.size());
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t w = std::min(hi, (j + 1) * dst_len) - std::max(lo, j * dst_len);
      a.weight.push_back(static_cast<uint32_t>(w));
    }
  }
  a.begin[dst_len] = static_cast<int64_t>(a.weight.size());
  return a;
}

// acc[k] = w * row[k] (first row of an output row) or acc[k] += w * row[k], k < len: the vertical pass's inner
// loop, compiled for AVX2 as well as the baseline and picked at run time (area_resize.cpp).
void accumulate_row(uint32_t* acc, const uint8_t* row, uint32_t w, int64_t len, bool first);

// sum[k] = row[k] (first) or sum[k] += row[k]: the interior rows of one output row, whose weights all equal the
// output length, are summed plainly in uint16 (<= 257 rows), and multiplied once by scale_u16: acc[k] = w sum[k].
void add_row_u16(uint16_t* sum, const uint8_t* row, int64_t len, bool first);
void scale_u16(uint32_t* acc, const uint16_t* sum, uint32_t w, int64_t len);

// The horizontal pass for 3 interleaved channels: out[3 ox + c] = sum_t wx[t] acc[3 (first[ox] + t') + c], in
// double, which is exact here (every product < 2^37, every sum < 2^40 < 2^53). Reads one uint32 past the last
// pixel, so `acc` has one element of padding. Runtime-dispatched like accumulate_row.
void horizontal_bgr(const uint32_t* acc, const AxisWeights& wx, double* out);

// Resizes an in_h x in_w x C uint8 image whose rows `row(j)` hands out (as contiguous in_w * C bytes).
// Vertical pass first: the source rows of one output row are weighted into a uint32 accumulator row (a contiguous,
// vectorisable multiply-add, <= 255 * in_h < 2^31), then the horizontal pass folds it into out_w * C numerators
// and `emit(oy, numerators)` converts them: doubles (exact integers) for C = 3, uint64 for C = 1. Every source row
// is fetched from memory once; a row shared by two output rows is read a second time from cache.
template <int C, class RowFn, class EmitFn>
void area_resize(int64_t in_w, const AxisWeights& wy, const AxisWeights& wx, RowFn&& row, EmitFn&& emit) {
  const int64_t out_h = static_cast<int64_t>(wy.first.size());
  const int64_t out_w = static_cast<int64_t>(wx.first.size());
  const int64_t len = in_w * C;
  std::vector<uint32_t> acc(static_cast<size_t>(len + 1));
  std::vector<uint16_t> sum16(static_cast<size_t>(len));
  using Sum = std::conditional_t<C == 3, double, uint64_t>;
  std::vector<Sum> sums(static_cast<size_t>(out_w * C));
  for (int64_t oy = 0; oy < out_h; ++oy) {
    const int64_t b = wy.begin[oy], e = wy.begin[oy + 1];
    const int64_t j0 = wy.first[oy], taps = e - b;
    if (taps >= 3 && taps - 2 <= 257) {
      // Interior rows carry weight out_h each: sum them plainly, multiply once, then add the two edge rows.
      for (int64_t j = j0 + 1; j < j0 + taps - 1; ++j) add_row_u16(sum16.data(), row(j), len, j == j0 + 1);
      scale_u16(acc.data(), sum16.data(), wy.weight[b + 1], len);
      accumulate_row(acc.data(), row(j0), wy.weight[b], len, false);
      accumulate_row(acc.data(), row(j0 + taps - 1), wy.weight[e - 1], len, false);
    } else {
      for (int64_t t = b; t < e; ++t) accumulate_row(acc.data(), row(j0 + (t - b)), wy.weight[t], len, t == b);
    }
    Sum* s = sums.data();
    if constexpr (C == 3) {
      horizontal_bgr(acc.data(), wx, s);
    } else {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        uint64_t sc[C] = {};
        const uint32_t* a = acc.data() + wx.first[ox] * C;
        for (int64_t t = wx.begin[ox]; t < wx.begin[ox + 1]; ++t, a += C) {
          const uint64_t w = wx.weight[t];
          for (int c = 0; c < C; ++c) sc[c] += w * a[c];
        }
        for (int c = 0; c < C; ++c) s[ox * C + c] = sc[c];
      }
    }
    emit(oy, static_cast<const Sum*>(s));
  }
}

// Hands out row j of an image as contiguous bytes: a pointer into the image when its rows are packed (the camera
// case), else the row gathered into a scratch buffer (one row, never the whole image).
class RowReader {
 public:
  RowReader(const uint8_t* base, int64_t w, int64_t c, ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t sc)
      : base_(base), w_(w), c_(c), sy_(sy), sx_(sx), sc_(sc), packed_(sc == 1 && sx == c) {
    if (!packed_) buf_.resize(static_cast<size_t>(w * c));
  }
  const uint8_t* operator()(int64_t j) {
    const uint8_t* r = base_ + j * sy_;
    if (packed_) return r;
    uint8_t* o = buf_.data();
    for (int64_t x = 0; x < w_; ++x)
      for (int64_t c = 0; c < c_; ++c) *o++ = r[x * sx_ + c * sc_];
    return buf_.data();
  }

 private:
  const uint8_t* base_;
  int64_t w_, c_;
  ptrdiff_t sy_, sx_, sc_;
  bool packed_;
  std::vector<uint8_t> buf_;
};

}  // namespace atelier
