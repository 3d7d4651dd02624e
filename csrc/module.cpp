// pybind11 bindings for the kiosk kernels: the private module edge._kernels (the API is edge/kernels.py).
//
// This file owns every check on what Python hands in: types, dtypes, shapes, empty arrays, size limits, output
// overflow. The messages are word for word those of edge/kernels_ref.py (a test holds them together), and the
// kernels in the other .cpp files run on the validated views with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels.hpp"

namespace py = pybind11;
using atelier::Batch;
using atelier::Image;

namespace {

constexpr int64_t kMaxSidePx = 65536;           // any input or output image side
constexpr int64_t kMaxModelSizePx = 4096;       // preprocess_frame's output side
constexpr int64_t kMaxOutputBytes = 1LL << 30;  // any one output array
constexpr int64_t kMaxUpscale = 64;
constexpr int64_t kMaxPadPx = 1024;

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

// Python's repr of a shape tuple: "(3,)", "(2, 3)".
std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Raises errors prefixed with the public function's name.
class Check {
 public:
  explicit Check(const char* fn) : fn_(fn) {}

  [[noreturn]] void type_error(const std::string& msg) const { throw py::type_error(fn_ + ": " + msg); }
  [[noreturn]] void value_error(const std::string& msg) const { throw py::value_error(fn_ + ": " + msg); }

  py::array array(py::handle obj, const std::string& name) const {
    if (!py::isinstance<py::array>(obj)) type_error(name + " must be a numpy.ndarray, got " + type_name(obj));
    return py::reinterpret_borrow<py::array>(obj);
  }

  void dtype(const py::array& a, const std::string& name, const py::dtype& want, const std::string& want_name) const {
    if (!a.dtype().equal(want)) type_error(name + " must be " + want_name + ", got " + std::string(py::str(a.dtype())));
  }

  void not_empty(const py::array& a, const std::string& name) const {
    if (a.size() == 0) value_error(name + " is empty (shape " + shape_str(a) + ")");
  }

  void side_limit(const std::string& name, int64_t h, int64_t w) const {
    if (h > kMaxSidePx || w > kMaxSidePx)
      value_error(name + " is " + std::to_string(h) + " x " + std::to_string(w) + " px; at most " +
                  std::to_string(kMaxSidePx) + " px a side");
  }

  void output_limit(int64_t bytes) const {
    if (bytes > kMaxOutputBytes)
      value_error("the output would take " + std::to_string(bytes) + " bytes; at most " +
                  std::to_string(kMaxOutputBytes));
  }

  // An int (Python or numpy, not bool) in [lo, hi].
  int64_t integer(py::handle obj, const std::string& name, int64_t lo, int64_t hi) const {
    py::object idx = index(obj, name);
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    if (overflow || v < lo || v > hi)
      value_error(name + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                  std::string(py::str(idx)));
    return v;
  }

  uint64_t uint64(py::handle obj, const std::string& name) const {
    py::object idx = index(obj, name);
    const unsigned long long v = PyLong_AsUnsignedLongLong(idx.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      value_error(name + " must be in [0, 2**64 - 1], got " + std::string(py::str(idx)));
    }
    return v;
  }

  // A real number (numbers.Real, not bool), finite and > 0.
  double positive_real(py::handle obj, const std::string& name) const {
    const py::object real = py::module_::import("numbers").attr("Real");
    if (PyBool_Check(obj.ptr()) || !py::isinstance(obj, real))
      type_error(name + " must be a real number, got " + type_name(obj));
    const double v = py::float_(py::reinterpret_borrow<py::object>(obj));
    if (!std::isfinite(v) || v <= 0.0)
      value_error(name + " must be a finite number > 0, got " + std::string(py::repr(obj)));
    return v;
  }

  // One of two strings; returns true for the first.
  bool choice(py::handle obj, const std::string& name, const char* a, const char* b) const {
    if (py::isinstance<py::str>(obj)) {
      const std::string s = py::str(obj);
      if (s == a) return true;
      if (s == b) return false;
    }
    value_error(name + " must be '" + a + "' or '" + b + "', got " + std::string(py::repr(obj)));
  }

  // An H x W x 3 (BGR or RGB, as `layout` says) or, with `gray`, H x W uint8 image.
  Image image(py::handle obj, const std::string& name, bool gray, const std::string& layout) const {
    const py::array a = array(obj, name);
    dtype(a, name, py::dtype::of<uint8_t>(), "uint8");
    const bool color = a.ndim() == 3 && a.shape(2) == 3;
    if (!color && !(gray && a.ndim() == 2)) value_error(name + " must be " + layout + ", got shape " + shape_str(a));
    not_empty(a, name);
    side_limit(name, a.shape(0), a.shape(1));
    return Image{static_cast<const uint8_t*>(a.data()), a.shape(0), a.shape(1), color ? 3 : 1,
                 a.strides(0),  a.strides(1),  color ? a.strides(2) : 1};
  }

  // An N x H x W x 3 array (dtype checked by the caller).
  Batch batch(const py::array& a, const std::string& name) const {
    if (a.ndim() != 4 || a.shape(3) != 3) value_error(name + " must be N x H x W x 3, got shape " + shape_str(a));
    not_empty(a, name);
    side_limit(name, a.shape(1), a.shape(2));
    return Batch{static_cast<const char*>(a.data()), a.shape(0), a.shape(1), a.shape(2),
                 a.strides(0), a.strides(1), a.strides(2), a.strides(3)};
  }

 private:
  py::object index(py::handle obj, const std::string& name) const {
    if (!PyBool_Check(obj.ptr())) {
      PyObject* idx = PyNumber_Index(obj.ptr());
      if (idx) return py::reinterpret_steal<py::object>(idx);
      PyErr_Clear();
    }
    type_error(name + " must be an int, got " + type_name(obj));
  }

  std::string fn_;
};

const char* const kFrameLayout = "H x W x 3 (BGR)";
const char* const kFrameOrGray = "H x W x 3 (BGR) or H x W (gray)";

py::array preprocess_frame(py::handle frame, py::handle size, py::handle crop, py::handle out, py::handle scale,
                           py::handle zero_point) {
  const Check check("preprocess_frame");
  const Image f = check.image(frame, "frame", false, kFrameLayout);
  const int64_t n = check.integer(size, "size", 1, kMaxModelSizePx);
  const bool center = check.choice(crop, "crop", "center", "full");
  const bool as_float = check.choice(out, "out", "float", "int8");
  double s = 1.0;
  int zp = 0;
  if (as_float) {
    if (!scale.is_none() || !zero_point.is_none()) check.value_error("scale and zero_point apply only to out='int8'");
  } else {
    if (scale.is_none() || zero_point.is_none())
      check.value_error("out='int8' needs scale and zero_point (the model input's quantization)");
    s = check.positive_real(scale, "scale");
    zp = static_cast<int>(check.integer(zero_point, "zero_point", -128, 127));
  }
  py::array result = as_float ? py::array(py::array_t<float>({n, n, int64_t{3}}))
                              : py::array(py::array_t<int8_t>({n, n, int64_t{3}}));
  void* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    atelier::preprocess_frame(f, n, center, as_float ? atelier::OutKind::kFloat32 : atelier::OutKind::kInt8, s, zp,
                              dst);
  }
  return result;
}

py::array postprocess(py::handle batch, py::handle scale, py::handle zero_point) {
  const Check check("postprocess");
  const py::array a = check.array(batch, "batch");
  const bool is_int8 = a.dtype().equal(py::dtype::of<int8_t>());
  if (!is_int8 && !a.dtype().equal(py::dtype::of<float>()))
    check.type_error("batch must be int8 or float32, got " + std::string(py::str(a.dtype())));
  const Batch b = check.batch(a, "batch");
  check.output_limit(b.n * b.h * b.w * 3);
  double s = 1.0;
  int zp = 0;
  if (is_int8) {
    if (scale.is_none() || zero_point.is_none())
      check.value_error("an int8 batch needs scale and zero_point (the output tensor's quantization)");
    s = check.positive_real(scale, "scale");
    zp = static_cast<int>(check.integer(zero_point, "zero_point", -128, 127));
  } else if (!scale.is_none() || !zero_point.is_none()) {
    check.value_error("scale and zero_point apply only to int8 batches");
  }
  py::array_t<uint8_t> result({b.n, b.h, b.w, int64_t{3}});
  uint8_t* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    if (is_int8) {
      atelier::postprocess_int8(b, s, zp, dst);
    } else {
      atelier::postprocess_float(b, dst);
    }
  }
  return std::move(result);
}

py::array tile(py::handle images, py::handle cols, py::handle pad, py::handle background) {
  const Check check("tile");
  const py::array a = check.array(images, "images");
  check.dtype(a, "images", py::dtype::of<uint8_t>(), "uint8");
  const Batch b = check.batch(a, "images");
  const int64_t c = check.integer(cols, "cols", 1, kMaxSidePx);
  const int64_t p = check.integer(pad, "pad", 0, kMaxPadPx);
  uint8_t bg[3];
  if (py::isinstance<py::tuple>(background) || py::isinstance<py::list>(background)) {
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(background);
    if (py::len(seq) != 3)
      check.value_error("background must be an int or an (R, G, B) tuple, got " + std::string(py::repr(background)));
    for (int k = 0; k < 3; ++k) bg[k] = static_cast<uint8_t>(check.integer(seq[k], "background", 0, 255));
  } else if (PyIndex_Check(background.ptr()) && !PyBool_Check(background.ptr())) {
    bg[0] = bg[1] = bg[2] = static_cast<uint8_t>(check.integer(background, "background", 0, 255));
  } else {
    check.type_error("background must be an int or an (R, G, B) tuple, got " + type_name(background));
  }
  const int64_t rows = (b.n + c - 1) / c;  // n < 2^62: n * 3 elements fit in an ndarray
  if (rows > kMaxSidePx)  // also keeps the sizes below from overflowing
    check.value_error("the grid would have " + std::to_string(rows) + " rows of images; at most " +
                      std::to_string(kMaxSidePx));
  const int64_t out_h = rows * b.h + (rows + 1) * p, out_w = c * b.w + (c + 1) * p;
  check.side_limit("the grid", out_h, out_w);
  check.output_limit(out_h * out_w * 3);
  py::array_t<uint8_t> result({out_h, out_w, int64_t{3}});
  uint8_t* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    atelier::tile(b, c, p, bg, dst);
  }
  return std::move(result);
}

py::array upscale(py::handle image, py::handle factor, py::handle mode) {
  const Check check("upscale");
  const Image im = check.image(image, "image", true, "H x W x 3 (RGB) or H x W (gray)");
  const int64_t f = check.integer(factor, "factor", 1, kMaxUpscale);
  const bool nearest = check.choice(mode, "mode", "nearest", "bilinear");
  check.side_limit("the output", im.h * f, im.w * f);
  check.output_limit(im.h * f * im.w * f * im.c);
  py::array_t<uint8_t> result = im.c == 3 ? py::array_t<uint8_t>({im.h * f, im.w * f, int64_t{3}})
                                          : py::array_t<uint8_t>({im.h * f, im.w * f});
  uint8_t* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    if (nearest) {
      atelier::upscale_nearest(im, f, dst);
    } else {
      atelier::upscale_bilinear(im, f, dst);
    }
  }
  return std::move(result);
}

double sharpness(py::handle frame) {
  const Image f = Check("sharpness").image(frame, "frame", true, kFrameOrGray);
  py::gil_scoped_release release;
  return atelier::sharpness(f);
}

py::tuple exposure(py::handle frame, py::handle dark_max, py::handle bright_min) {
  const Check check("exposure");
  const Image f = check.image(frame, "frame", true, kFrameOrGray);
  const int dark = static_cast<int>(check.integer(dark_max, "dark_max", 0, 255));
  const int bright = static_cast<int>(check.integer(bright_min, "bright_min", 0, 255));
  atelier::ExposureStats s{};
  {
    py::gil_scoped_release release;
    s = atelier::exposure(f, dark, bright);
  }
  return py::make_tuple(s.mean_luma, s.dark_fraction, s.bright_fraction);
}

py::int_ dhash64(py::handle frame) {
  const Image f = Check("dhash64").image(frame, "frame", true, kFrameOrGray);
  uint64_t h = 0;
  {
    py::gil_scoped_release release;
    h = atelier::dhash64(f);
  }
  return py::int_(h);
}

py::tuple hamming_nearest(py::handle h, py::handle table) {
  const Check check("hamming_nearest");
  const uint64_t key = check.uint64(h, "h");
  const py::array a = check.array(table, "table");
  check.dtype(a, "table", py::dtype::of<uint64_t>(), "uint64");
  if (a.ndim() != 1) check.value_error("table must be 1-D, got shape " + shape_str(a));
  check.not_empty(a, "table");
  std::pair<int64_t, int> best;
  {
    py::gil_scoped_release release;
    best = atelier::hamming_nearest(key, static_cast<const char*>(a.data()), a.shape(0), a.strides(0));
  }
  return py::make_tuple(best.first, best.second);
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Atelier kiosk kernels (private; use edge.kernels)";
  m.attr("MAX_SIDE_PX") = kMaxSidePx;
  m.attr("MAX_MODEL_SIZE_PX") = kMaxModelSizePx;
  m.attr("MAX_OUTPUT_BYTES") = kMaxOutputBytes;
  m.def("preprocess_frame", &preprocess_frame, py::arg("frame"), py::arg("size"), py::kw_only(),
        py::arg("crop") = "center", py::arg("out") = "float", py::arg("scale") = py::none(),
        py::arg("zero_point") = py::none());
  m.def("postprocess", &postprocess, py::arg("batch"), py::kw_only(), py::arg("scale") = py::none(),
        py::arg("zero_point") = py::none());
  m.def("tile", &tile, py::arg("images"), py::arg("cols"), py::arg("pad") = 4, py::arg("background") = 255);
  m.def("upscale", &upscale, py::arg("image"), py::arg("factor"), py::arg("mode") = "nearest");
  m.def("sharpness", &sharpness, py::arg("frame"));
  m.def("exposure", &exposure, py::arg("frame"), py::kw_only(), py::arg("dark_max") = 16,
        py::arg("bright_min") = 235);
  m.def("dhash64", &dhash64, py::arg("frame"));
  m.def("hamming_nearest", &hamming_nearest, py::arg("h"), py::arg("table"));
}
