// pybind11 bindings for the kiosk kernels: the private module edge._kernels.
// The Python API is edge/kernels.py; every kernel has a NumPy reference in edge/kernels_ref.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace py = pybind11;

namespace {

// float32 generator output in [-1, 1] (N x H x W x 3, any strides) -> uint8 RGB, round((x + 1) * 127.5) clamped.
py::array_t<uint8_t> postprocess_float(const py::array_t<float, 0>& batch) {
  if (batch.ndim() != 4 || batch.shape(3) != 3) {
    throw py::value_error("postprocess: expected an N x H x W x 3 array, got ndim=" + std::to_string(batch.ndim()));
  }
  const auto n = batch.shape(0), h = batch.shape(1), w = batch.shape(2);
  py::array_t<uint8_t> out({n, h, w, static_cast<py::ssize_t>(3)});
  auto src = batch.unchecked<4>();
  auto dst = out.mutable_unchecked<4>();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i)
      for (py::ssize_t y = 0; y < h; ++y)
        for (py::ssize_t x = 0; x < w; ++x)
          for (py::ssize_t c = 0; c < 3; ++c) {
            float v = std::nearbyint((src(i, y, x, c) + 1.0f) * 127.5f);
            v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
            dst(i, y, x, c) = static_cast<uint8_t>(v);
          }
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Atelier kiosk kernels (private; use edge.kernels)";
  m.def("postprocess_float", &postprocess_float, py::arg("batch"));
}
