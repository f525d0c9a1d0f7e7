// The only file that knows about Python: exposes the C++ core as the private module hyperchroma._core.
// Arrays come in as C-contiguous numpy arrays, outputs are allocated before the GIL is released, and all
// compute runs with the GIL released. std::invalid_argument -> ValueError, std::bad_alloc -> MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "hypercolumns.hpp"
#include "keys.hpp"
#include "median_filter.hpp"

namespace py = pybind11;
using namespace hyperchroma;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? "," : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

// Keys must already be uint64: silently casting floats into keys would corrupt them.
carray<std::uint64_t> as_keys(const py::handle& obj, const KeyLayout& layout, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr) throw py::type_error(std::string(what) + " must be a numpy array of uint64 keys");
    if (!py::isinstance<py::array_t<std::uint64_t>>(arr) || arr.dtype().kind() != 'u')
        throw py::type_error(std::string(what) + " must have dtype uint64, got " +
                             std::string(py::str(arr.dtype())));
    if (arr.ndim() != 2 || arr.shape(1) != layout.words)
        throw std::invalid_argument(std::string(what) + ": expected (N, " + std::to_string(layout.words) +
                                    ") uint64 keys for " + std::to_string(layout.channels) + " channels at " +
                                    std::to_string(layout.levels) + " levels, got shape " + shape_str(arr));
    return carray<std::uint64_t>::ensure(arr);
}

// A list of (C_i, h_i, w_i) float32 maps, converted once and viewed without copying afterwards.
struct MapList {
    std::vector<carray<float>> arrays;  // keep the converted arrays alive
    std::vector<FeatureMap> maps;
};

MapList as_maps(const py::sequence& seq) {
    MapList out;
    if (py::len(seq) == 0) throw std::invalid_argument("maps: expected at least one (C,h,w) feature map");
    for (py::ssize_t i = 0; i < static_cast<py::ssize_t>(py::len(seq)); ++i) {
        py::object item = seq[static_cast<std::size_t>(i)];
        auto arr = carray<float>::ensure(item);
        if (!arr) throw py::type_error("maps[" + std::to_string(i) + "] must be a float32 numpy array");
        if (arr.ndim() != 3)
            throw std::invalid_argument("maps[" + std::to_string(i) + "]: expected (C,h,w) float32, got shape " +
                                        shape_str(arr));
        if (arr.shape(0) < 1 || arr.shape(1) < 1 || arr.shape(2) < 1)
            throw std::invalid_argument("maps[" + std::to_string(i) + "]: empty map of shape " + shape_str(arr));
        out.maps.push_back(FeatureMap{arr.data(), static_cast<int>(arr.shape(0)), static_cast<int>(arr.shape(1)),
                                      static_cast<int>(arr.shape(2))});
        out.arrays.push_back(std::move(arr));
    }
    return out;
}

void check_size(long H, long W) {
    if (H < 1 || W < 1)
        throw std::invalid_argument("output size must be at least 1x1, got " + std::to_string(H) + "x" +
                                    std::to_string(W));
}

// ---------------------------------------------------------------- hypercolumn kernels (hypercolumns.hpp)
void bind_hypercolumns(py::module_& m) {
    m.def(
        "key_words",
        [](int channels, int levels) { return KeyLayout(channels, levels).words; }, py::arg("channels"),
        py::arg("levels"), "Number of 64-bit words in a packed key of `channels` channels at `levels` levels.");

    m.def(
        "upsample_bilinear",
        [](const carray<float>& maps, long H, long W, int threads) {
            if (maps.ndim() != 3)
                throw std::invalid_argument("maps: expected (C,h,w) float32, got shape " + shape_str(maps));
            if (maps.shape(0) < 1 || maps.shape(1) < 1 || maps.shape(2) < 1)
                throw std::invalid_argument("maps: empty map of shape " + shape_str(maps));
            check_size(H, W);
            const FeatureMap fm{maps.data(), static_cast<int>(maps.shape(0)), static_cast<int>(maps.shape(1)),
                                static_cast<int>(maps.shape(2))};
            py::array_t<float> out({static_cast<py::ssize_t>(fm.channels), static_cast<py::ssize_t>(H),
                                    static_cast<py::ssize_t>(W)});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                upsample_bilinear(fm, static_cast<int>(H), static_cast<int>(W), dst, threads);
            }
            return out;
        },
        py::arg("maps"), py::arg("H"), py::arg("W"), py::arg("threads") = 1,
        "Bilinear upsampling of (C,h,w) float32 maps to (C,H,W), half-pixel centers, edges clamped "
        "(OpenCV INTER_LINEAR, PyTorch align_corners=False).");

    m.def(
        "hypercolumns",
        [](const py::sequence& seq, long H, long W, int threads) {
            MapList ml = as_maps(seq);
            check_size(H, W);
            long total = 0;
            for (const auto& fm : ml.maps) total += fm.channels;
            py::array_t<float> out({static_cast<py::ssize_t>(H * W), static_cast<py::ssize_t>(total)});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                hypercolumns(ml.maps, static_cast<int>(H), static_cast<int>(W), dst, threads);
            }
            return out;
        },
        py::arg("maps"), py::arg("H"), py::arg("W"), py::arg("threads") = 1,
        "Materialized hypercolumns: every map upsampled to (H,W) and concatenated per pixel -> (H*W, sum C_i).");

    m.def(
        "hypercolumn_keys",
        [](const py::sequence& seq, long H, long W, const carray<float>& thresholds, const carray<float>& weights,
           int threads) {
            MapList ml = as_maps(seq);
            check_size(H, W);
            long total = 0;
            for (const auto& fm : ml.maps) total += fm.channels;
            if (thresholds.ndim() != 2 || thresholds.shape(0) != total || thresholds.shape(1) < 1)
                throw std::invalid_argument("thresholds: expected (" + std::to_string(total) +
                                            ", levels-1) float32 (one row per hypercolumn channel), got shape " +
                                            shape_str(thresholds));
            if (weights.ndim() != 1 || weights.shape(0) != total)
                throw std::invalid_argument("weights: expected (" + std::to_string(total) +
                                            ",) float32 (one per hypercolumn channel), got shape " +
                                            shape_str(weights));
            const KeyLayout layout(static_cast<int>(total), static_cast<int>(thresholds.shape(1)) + 1);
            check_thresholds(thresholds.data(), layout);
            py::array_t<std::uint64_t> keys({static_cast<py::ssize_t>(H * W), static_cast<py::ssize_t>(layout.words)});
            py::array_t<float> sums(static_cast<py::ssize_t>(H * W));
            std::uint64_t* kp = keys.mutable_data();
            float* sp = sums.mutable_data();
            {
                py::gil_scoped_release release;
                hypercolumn_keys(ml.maps, static_cast<int>(H), static_cast<int>(W), layout, thresholds.data(),
                                 weights.data(), kp, sp, threads);
            }
            return py::make_tuple(keys, sums);
        },
        py::arg("maps"), py::arg("H"), py::arg("W"), py::arg("thresholds"), py::arg("weights"),
        py::arg("threads") = 1,
        "Fused upsample + quantize + pack + weighted sum, never materializing the float hypercolumns.\n"
        "Level of channel c = number of thresholds[c] <= value (thresholds sorted per row).\n"
        "Returns (keys uint64 (H*W, words), sums float32 (H*W,)) where sums = sum_c weights[c] * level_c.");

    m.def(
        "pack_keys",
        [](const carray<std::uint8_t>& levels_arr, int levels) {
            if (levels_arr.ndim() != 2 || levels_arr.shape(1) < 1)
                throw std::invalid_argument("levels: expected (N, C) uint8, got shape " + shape_str(levels_arr));
            const KeyLayout layout(static_cast<int>(levels_arr.shape(1)), levels);
            const auto n = levels_arr.shape(0);
            py::array_t<std::uint64_t> keys({n, static_cast<py::ssize_t>(layout.words)});
            std::uint64_t* kp = keys.mutable_data();
            const std::uint8_t* q = levels_arr.data();
            {
                py::gil_scoped_release release;
                pack_keys(q, static_cast<std::size_t>(n), layout, kp);
            }
            return keys;
        },
        py::arg("levels_array"), py::arg("levels"),
        "Pack per-channel quantization levels (N, C) uint8 into (N, words) uint64 keys.");

    m.def(
        "unpack_keys",
        [](const py::handle& keys_obj, int channels, int levels) {
            const KeyLayout layout(channels, levels);
            auto keys = as_keys(keys_obj, layout, "keys");
            const auto n = keys.shape(0);
            py::array_t<std::uint8_t> out({n, static_cast<py::ssize_t>(channels)});
            std::uint8_t* q = out.mutable_data();
            const std::uint64_t* kp = keys.data();
            {
                py::gil_scoped_release release;
                unpack_keys(kp, static_cast<std::size_t>(n), layout, q);
            }
            return out;
        },
        py::arg("keys"), py::arg("channels"), py::arg("levels"),
        "Unpack (N, words) uint64 keys into per-channel levels (N, C) uint8.");
}

// ---------------------------------------------------------------- hash table (hash_table.hpp)
void bind_table(py::module_& m) {

}

// ---------------------------------------------------------------- sorted index (sorted_index.hpp)
void bind_index(py::module_& m) {

}

// ---------------------------------------------------------------- median filter (median_filter.hpp)
void bind_median(py::module_& m) {
    // Filters img as T (its dtype, checked by the caller): only non-contiguous input is copied (to C order).
    const auto run = [](auto* type_tag, const py::array& img, std::int64_t size, int threads) -> py::array {
        using T = std::remove_pointer_t<decltype(type_tag)>;
        auto a = carray<T>::ensure(img);
        if (!a) throw py::error_already_set();
        const auto H = static_cast<std::size_t>(a.shape(0)), W = static_cast<std::size_t>(a.shape(1));
        const auto C = a.ndim() == 3 ? static_cast<std::size_t>(a.shape(2)) : std::size_t{1};
        py::array_t<T> out(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
        const T* src = a.data();
        T* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            median_filter(src, dst, H, W, C, size, threads);
        }
        return py::array(std::move(out));
    };

    m.def(
        "median_filter",
        [run](const py::handle& obj, std::int64_t size, int threads) -> py::array {
            py::array img = py::array::ensure(obj);
            if (!img) throw py::type_error("median_filter: img must be a numpy array");
            const bool is_f32 = py::isinstance<py::array_t<float>>(img) && img.dtype().kind() == 'f';
            const bool is_u8 = py::isinstance<py::array_t<std::uint8_t>>(img) && img.dtype().kind() == 'u';
            if (!is_f32 && !is_u8)
                throw py::type_error("median_filter: img has dtype " + std::string(py::str(img.dtype())) +
                                     "; supported dtypes are float32 and uint8 (convert with "
                                     "img.astype(np.float32))");
            if (img.ndim() != 2 && img.ndim() != 3)
                throw std::invalid_argument("median_filter: expected an (H,W) or (H,W,C) image, got shape " +
                                            shape_str(img));
            for (py::ssize_t i = 0; i < img.ndim(); ++i)
                if (img.shape(i) == 0)
                    throw std::invalid_argument("median_filter: empty image of shape " + shape_str(img));
            check_median_args(1, 1, 1, size);
            return is_f32 ? run(static_cast<float*>(nullptr), img, size, threads)
                          : run(static_cast<std::uint8_t*>(nullptr), img, size, threads);
        },
        py::arg("img"), py::arg("size"), py::arg("threads") = 1,
        "Exact median filter over size x size windows with replicated edges.\n\n"
        "img: (H,W) or (H,W,C) numpy array, float32 or uint8 (other dtypes raise TypeError; nothing is cast).\n"
        "Any strides are accepted. Each channel of an (H,W,C) image is filtered on its own.\n"
        "size: odd window side >= 1; it may exceed the image (edges are replicated as far as needed).\n"
        "threads: 1 runs on the calling thread; n > 1 splits the rows over n threads; 0 uses all hardware\n"
        "threads. The result does not depend on threads.\n\n"
        "Returns a new array of the same shape and dtype, equal to\n"
        "scipy.ndimage.median_filter(img, size=(size, size[, 1]), mode='nearest') and to cv2.medianBlur\n"
        "(where OpenCV supports the case).\n\n"
        "NaN (float32): values are ordered by IEEE totalOrder with every NaN above +inf, so an output is NaN\n"
        "exactly when more than half of its window is NaN (scipy and OpenCV leave this unspecified and differ).\n"
        "-0.0 sorts below +0.0. Except for size 1 (a plain copy), NaN outputs are the canonical quiet NaN.\n\n"
        "Speed: sizes 3, 5 and 7 use pruned sorting networks vectorized across pixels (SIMD chosen at run\n"
        "time; needs (size-1)*C <= 512); other uint8 sizes a sliding histogram, O(size) per pixel; other\n"
        "float32 sizes a sorted window slid along each row, O(size^2) per pixel.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "hyperchroma's C++ core: hypercolumn keys, hash table, sorted index, median filter.";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::length_error& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });
    bind_hypercolumns(m);
    bind_table(m);
    bind_index(m);
    bind_median(m);
}
