// The only file that knows about Python: exposes the C++ core as the private module hyperchroma._core.
// Arrays come in as C-contiguous numpy arrays, outputs are allocated before the GIL is released, and all
// compute runs with the GIL released. std::invalid_argument -> ValueError, std::bad_alloc -> MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "color.hpp"
#include "compose_grid.hpp"
#include "detail_sampling.hpp"
#include "guided_filter.hpp"
#include "hash_table.hpp"
#include "hypercolumns.hpp"
#include "keys.hpp"
#include "lookup_chain.hpp"
#include "median_filter.hpp"
#include "neighbor_seeds.hpp"
#include "pwl_conv.hpp"
#include "resample.hpp"
#include "sorted_index.hpp"
#include "unique_keys.hpp"

namespace py = pybind11;
using namespace hyperchroma;

namespace {

// Inputs the core reads through T* must be C-contiguous and aligned for T: a numpy view such as
// np.frombuffer(buf, np.float32, offset=1) is not, and reading it as float* is undefined behaviour (UBSan
// "misaligned address"). NPY_ARRAY_ALIGNED makes numpy copy such arrays, in the argument casters and in
// every carray<T>::ensure of the conversion helpers below.
template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_>;

// A numpy bool is a byte that may hold any value (np.frombuffer(b"\x02", bool)); a C++ bool must be 0 or 1,
// so bool arrays are normalized (bytes != 0) before the core sees them. Other dtypes cast to 0/1 by numpy.
carray<bool> as_bool01(const py::array& arr) {
    if (arr.dtype().kind() != 'b') return carray<bool>::ensure(arr);
    return carray<bool>::ensure(arr.attr("view")(py::dtype::of<std::uint8_t>()).attr("__ne__")(0));
}

std::string shape_str(const std::vector<py::ssize_t>& shape) {
    std::ostringstream s;
    s << "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? "," : "") << shape[i];
    s << (shape.size() == 1 ? ",)" : ")");
    return s.str();
}

std::string shape_str(const py::array& a) { return shape_str(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim())); }

// The RGB shape (..., 3) of a join of ``ref`` (...) with ``ab`` (..., 2), or (2, ...) when planar; else a
// clear error naming both shapes (``hint`` ends it).
std::vector<py::ssize_t> joined_rgb_shape(const py::array& ref, const char* ref_name, const py::array& ab,
                                          bool planar, const std::string& hint) {
    std::vector<py::ssize_t> shape(ref.shape(), ref.shape() + ref.ndim()), want = shape;
    if (planar) want.insert(want.begin(), 2); else want.push_back(2);
    if (std::vector<py::ssize_t>(ab.shape(), ab.shape() + ab.ndim()) != want)
        throw std::invalid_argument(std::string("ab: expected ") + (planar ? "(2, ...)" : "(..., 2)") + hint +
                                    " matching " + ref_name + "'s shape " + shape_str(ref) + ", got " +
                                    shape_str(ab) + (planar ? "" : " (pass planar=True for (2, ...) ab)"));
    shape.push_back(3);
    return shape;
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

// Every key a valid packing for the layout (no level >= levels, no stray bits); callable without the GIL.
void check_keys(const std::uint64_t* kp, std::size_t n, const KeyLayout& layout, const char* what) {
    if (layout.bits == 2 && layout.levels == 3) {
        // the default layout without branches (vectorized): a word is bad where a field is 0b11 or a bit beyond
        // its last field is set; only a bad key goes on to the row-by-row search below, which names it
        std::uint64_t bad = 0;
        const std::size_t W = static_cast<std::size_t>(layout.words);
        for (std::size_t w = 0; w < W; ++w) {
            const int fields = std::min(layout.fields_per_word, layout.channels - static_cast<int>(w) * layout.fields_per_word);
            const int used = fields * layout.bits;
            const std::uint64_t beyond = used < 64 ? ~((std::uint64_t{1} << used) - 1) : 0;
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint64_t x = kp[i * W + w];
                bad |= (x & (x >> 1) & 0x5555555555555555ULL) | (x & beyond);
            }
        }
        if (bad == 0) return;
    }
    for (std::size_t i = 0; i < n; ++i)
        if (const char* problem = layout.key_problem(kp + i * layout.words))
            throw std::invalid_argument(std::string(what) + ": row " + std::to_string(i) + " " + problem + " for " +
                                        std::to_string(layout.channels) + " channels at " +
                                        std::to_string(layout.levels) + " levels");
}

// uint8 image data must already be uint8: casting floats or wider integers would silently wrap values.
carray<std::uint8_t> as_u8(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr || arr.dtype().kind() != 'u' || arr.dtype().itemsize() != 1)
        throw py::type_error(std::string(what) + " must be a uint8 numpy array" +
                             (arr ? ", got " + std::string(py::str(arr.dtype())) : std::string()));
    return carray<std::uint8_t>::ensure(arr);
}

// Real-valued image data as float32 (float64 and integers are cast, as numpy would); complex, bool, object and
// string arrays are rejected instead of being silently mangled.
carray<float> as_real_f32(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    const char kind = arr ? arr.dtype().kind() : '?';
    if (!arr || (kind != 'f' && kind != 'u' && kind != 'i'))
        throw py::type_error(std::string(what) + " must be a real-valued (float32) numpy array" +
                             (arr ? ", got " + std::string(py::str(arr.dtype())) : std::string()));
    return carray<float>::ensure(arr);
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
        if (arr.shape(0) > (1L << 31) - 1 || arr.shape(1) > (1L << 31) - 1 || arr.shape(2) > (1L << 31) - 1)
            throw std::invalid_argument("maps[" + std::to_string(i) + "]: map too large " + shape_str(arr));
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
    constexpr long kMax = (1L << 31) - 1;
    if (H > kMax || W > kMax || H > kMax / W * 64)
        throw std::invalid_argument("output size " + std::to_string(H) + "x" + std::to_string(W) + " is too large");
}

bool overlaps(const py::array& a, const py::array& b) {
    const auto* pa = static_cast<const char*>(a.data());
    const auto* pb = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// A kernel's output: a new T array of `shape`, or the caller's `out` (the latency path's reused buffers) when it
// is a writeable C-contiguous T array of exactly that shape sharing no memory with any of `inputs` (a kernel
// reading what it writes would give wrong answers); else a clear error naming it ("fn: name").
template <class T>
py::array_t<T> output_array(const char* fn, const char* name, const py::handle& out_obj,
                            const std::vector<py::ssize_t>& shape, std::initializer_list<const py::array*> inputs = {}) {
    if (out_obj.is_none()) return py::array_t<T>(shape);
    const auto what = [&] { return std::string(fn) + ": " + name; };
    const auto want = [&] {
        return "a writeable C-contiguous " + std::string(py::str(py::dtype::of<T>())) + " numpy array of shape " +
               shape_str(shape);
    };
    if (!py::isinstance<py::array_t<T>>(out_obj)) throw py::type_error(what() + ": expected " + want());
    auto out = py::reinterpret_borrow<py::array_t<T>>(out_obj);
    bool same = static_cast<std::size_t>(out.ndim()) == shape.size();
    for (std::size_t i = 0; same && i < shape.size(); ++i) same = out.shape(static_cast<py::ssize_t>(i)) == shape[i];
    if (!(out.flags() & py::array::c_style) || !out.writeable() || !same)
        throw std::invalid_argument(what() + ": expected " + want() + ", got shape " + shape_str(out) +
                                    (out.writeable() ? "" : " (read-only)"));
    for (const py::array* in : inputs)
        if (overlaps(out, *in)) throw std::invalid_argument(what() + ": shares memory with an input");
    return out;
}

// The outputs of a kernel with several: `out` None (all new) or a tuple of exactly N arrays.
template <std::size_t N>
std::array<py::object, N> output_tuple(const char* what, const py::handle& out_obj) {
    std::array<py::object, N> v;
    if (out_obj.is_none()) {
        v.fill(py::none());
        return v;
    }
    if (!py::isinstance<py::tuple>(out_obj) || py::len(out_obj) != N)
        throw py::type_error(std::string(what) + ": expected None or a tuple of " + std::to_string(N) + " arrays");
    auto t = py::reinterpret_borrow<py::tuple>(out_obj);
    for (std::size_t i = 0; i < N; ++i) v[i] = t[i];
    return v;
}

// ---------------------------------------------------------------- film detail (detail_sampling.hpp)
void bind_detail_sampling(py::module_& m) {
    m.def(
        "upsample_detail",
        [](const carray<float>& ab, long H, long W, const py::sequence& details, const py::sequence& motions,
           double scale, int threads) {
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            if (ab.ndim() != 3 || ab.shape(0) != 2 || ab.shape(1) < 1 || ab.shape(2) < 1)
                throw std::invalid_argument("ab: expected (2, h, w) float32 (planar model-size ab), got shape " +
                                            shape_str(ab));
            check_size(H, W);
            if (py::len(details) != py::len(motions))
                throw std::invalid_argument("details and motions: one motion per detail plane, got " +
                                            std::to_string(py::len(details)) + " and " +
                                            std::to_string(py::len(motions)));
            if (!(scale > 0) || !std::isfinite(scale))
                throw std::invalid_argument("scale must be a positive number");
            const long h = static_cast<long>(ab.shape(1)), w = static_cast<long>(ab.shape(2));
            std::vector<carray<std::int16_t>> dk;
            std::vector<carray<float>> mk;
            std::vector<DetailTrack> tracks;
            for (std::size_t i = 0; i < py::len(details); ++i) {
                auto d = py::cast<carray<std::int16_t>>(details[i]);
                auto mo = py::cast<carray<float>>(motions[i]);
                if (d.ndim() != 3 || d.shape(0) != H || d.shape(1) != W || d.shape(2) != 2)
                    throw std::invalid_argument("details[" + std::to_string(i) + "]: expected (" +
                                                std::to_string(H) + ", " + std::to_string(W) + ", 2) int16, got " +
                                                shape_str(d));
                if (mo.ndim() != 3 || mo.shape(0) != 3 || mo.shape(1) != h || mo.shape(2) != w)
                    throw std::invalid_argument("motions[" + std::to_string(i) + "]: expected (3, " +
                                                std::to_string(h) + ", " + std::to_string(w) + ") float32, got " +
                                                shape_str(mo));
                dk.push_back(d);
                mk.push_back(mo);
            }
            for (std::size_t i = 0; i < dk.size(); ++i) tracks.push_back(DetailTrack{dk[i].data(), mk[i].data()});
            py::array_t<float> out({static_cast<py::ssize_t>(2), static_cast<py::ssize_t>(H),
                                    static_cast<py::ssize_t>(W)});
            float* op = out.mutable_data();
            {
                py::gil_scoped_release release;
                upsample_detail(ab.data(), static_cast<int>(h), static_cast<int>(w), static_cast<int>(H),
                                static_cast<int>(W), tracks, static_cast<float>(scale), op, threads);
            }
            return out;
        },
        py::arg("ab"), py::arg("H"), py::arg("W"), py::arg("details"), py::arg("motions"), py::arg("scale"),
        py::arg("threads") = 1,
        "upsample_bilinear(ab, H, W) plus, per track, weight * detail sampled at the position / scale: ab (2, h, w)\n"
        "float32; details: (H, W, 2) int16 (a, b side by side); motions: (3, h, w) float32 (position x, y in model-size pixels,\n"
        "weight), upsampled like ab; the position is mapped to full-resolution pixel centers and the detail sampled\n"
        "bilinearly there, border replicated. -> (2, H, W) float32.");
}

// ---------------------------------------------------------------- grid composition (compose_grid.hpp)
void bind_compose_grid(py::module_& m) {
    m.attr("COMPOSE_GRID_STEP") = grid::kStep;
    m.attr("COMPOSE_GRID_LIMIT") = grid::kHalf * grid::kStep;
    m.def(
        "compose_luma_grid",
        [](const py::handle& gray_obj, const py::handle& ab_obj, int threads) {
            const auto gray = as_u8(gray_obj, "gray");
            const auto ab = as_real_f32(ab_obj, "ab");
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            std::vector<py::ssize_t> gshape(gray.shape(), gray.shape() + gray.ndim()), want = gshape;
            want.insert(want.begin(), 2);
            if (std::vector<py::ssize_t>(ab.shape(), ab.shape() + ab.ndim()) != want)
                throw std::invalid_argument("ab: expected (2, ...) float32 matching gray's shape " + shape_str(gray) +
                                            ", got " + shape_str(ab));
            auto rgbshape = gshape;
            rgbshape.push_back(3);
            py::array_t<std::uint8_t> rgb(rgbshape);
            std::uint8_t* rp = rgb.mutable_data();
            const std::size_t n = static_cast<std::size_t>(gray.size());
            {
                py::gil_scoped_release release;
                compose_luma_grid(gray.data(), ab.data(), n, rp, threads);
            }
            return rgb;
        },
        py::arg("gray"), py::arg("ab"), py::arg("threads") = 1,
        "compose_luma(gray, ab rounded to the grid, planar=True): ab (2, ...) float32 rounded half up to the nearest\n"
        "multiple of COMPOSE_GRID_STEP (values outside +-COMPOSE_GRID_LIMIT or non-finite kept as they are), answered\n"
        "from a per-process table filled by compose_luma as cells are met. Converts back to exactly gray, like\n"
        "compose_luma. The result does not depend on threads.");
    m.def(
        "upsample_compose",
        [](const py::handle& gray_obj, const py::handle& ab_obj, int threads) {
            const auto gray = as_u8(gray_obj, "gray");
            const auto ab = as_real_f32(ab_obj, "ab");
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            if (gray.ndim() != 2)
                throw std::invalid_argument("gray: expected (H, W) uint8, got shape " + shape_str(gray));
            if (ab.ndim() != 3 || ab.shape(0) != 2 || ab.shape(1) < 1 || ab.shape(2) < 1)
                throw std::invalid_argument("ab: expected (2, h, w) float32 (planar model-size ab), got shape " +
                                            shape_str(ab));
            const long H = static_cast<long>(gray.shape(0)), W = static_cast<long>(gray.shape(1));
            check_size(H, W);
            py::array_t<std::uint8_t> rgb({static_cast<py::ssize_t>(H), static_cast<py::ssize_t>(W),
                                           static_cast<py::ssize_t>(3)});
            std::uint8_t* rp = rgb.mutable_data();
            {
                py::gil_scoped_release release;
                upsample_compose_grid(gray.data(), static_cast<int>(H), static_cast<int>(W), ab.data(),
                                      static_cast<int>(ab.shape(1)), static_cast<int>(ab.shape(2)), rp, threads);
            }
            return rgb;
        },
        py::arg("gray"), py::arg("ab"), py::arg("threads") = 1,
        "compose_luma_grid(gray, upsample_bilinear(ab, H, W)) in one pass without the full-size ab: gray (H, W)\n"
        "uint8, ab (2, h, w) float32 at model size -> rgb (H, W, 3) uint8 whose convert(\"L\") is gray exactly.");
}

// ---------------------------------------------------------------- distinct keys (unique_keys.hpp)
void bind_unique_keys(py::module_& m) {
    m.def(
        "unique_keys",
        [](const py::handle& keys_obj) {
            py::array arr = py::array::ensure(keys_obj);
            if (!arr || arr.dtype().kind() != 'u' || arr.dtype().itemsize() != 8)
                throw py::type_error("keys must be a uint64 numpy array" +
                                     (arr ? ", got " + std::string(py::str(arr.dtype())) : std::string()));
            if (arr.ndim() != 2 || arr.shape(1) < 1)
                throw std::invalid_argument("keys: expected (N, words) uint64, got shape " + shape_str(arr));
            const auto keys = carray<std::uint64_t>::ensure(arr);
            const std::size_t n = static_cast<std::size_t>(keys.shape(0));
            const int words = static_cast<int>(keys.shape(1));
            py::array_t<std::int64_t> inverse(static_cast<py::ssize_t>(n));
            std::int64_t* ip = inverse.mutable_data();
            std::vector<std::int64_t> first;
            {
                py::gil_scoped_release release;
                first.reserve(n);
                unique_keys(keys.data(), n, words, first, ip);
            }
            py::array_t<std::int64_t> firsts(static_cast<py::ssize_t>(first.size()));
            std::copy(first.begin(), first.end(), firsts.mutable_data());
            return py::make_tuple(firsts, inverse);
        },
        py::arg("keys"),
        "Distinct rows of (N, words) uint64 keys in order of first appearance -> (first (U,) int64: the row of\n"
        "each distinct key's first appearance, inverse (N,) int64: keys[first[inverse]] == keys).");
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
        "project_upsample",
        [](const py::sequence& seq, const py::sequence& mats, const carray<float>& bias, long H, long W,
           int threads) {
            MapList ml = as_maps(seq);
            check_size(H, W);
            if (bias.ndim() != 1 || bias.shape(0) < 1)
                throw std::invalid_argument("bias: expected (K,) float32, got shape " + shape_str(bias));
            const int K = static_cast<int>(bias.shape(0));
            if (static_cast<std::size_t>(py::len(mats)) != ml.maps.size())
                throw std::invalid_argument("matrices: expected one (C_i, K) matrix per map (" +
                                            std::to_string(ml.maps.size()) + "), got " +
                                            std::to_string(py::len(mats)));
            std::vector<carray<float>> keep;
            std::vector<const float*> ptrs;
            for (std::size_t i = 0; i < ml.maps.size(); ++i) {
                py::object item = mats[i];
                auto arr = carray<float>::ensure(item);
                if (!arr) throw py::type_error("matrices[" + std::to_string(i) + "] must be a float32 numpy array");
                if (arr.ndim() != 2 || arr.shape(0) != ml.maps[i].channels || arr.shape(1) != K)
                    throw std::invalid_argument("matrices[" + std::to_string(i) + "]: expected (" +
                                                std::to_string(ml.maps[i].channels) + ", " + std::to_string(K) +
                                                ") float32 for that map, got shape " + shape_str(arr));
                ptrs.push_back(arr.data());
                keep.push_back(std::move(arr));
            }
            py::array_t<float> out({static_cast<py::ssize_t>(K), static_cast<py::ssize_t>(H),
                                    static_cast<py::ssize_t>(W)});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                project_upsample(ml.maps, ptrs, K, bias.data(), static_cast<int>(H), static_cast<int>(W), dst,
                                 threads);
            }
            return out;
        },
        py::arg("maps"), py::arg("matrices"), py::arg("bias"), py::arg("H"), py::arg("W"), py::arg("threads") = 1,
        "Projection fused with upsampling: sum_i upsample_bilinear(matrices[i].T @ maps[i]) - bias -> (K,H,W)\n"
        "float32; maps (C_i,h_i,w_i) float32, matrices (C_i,K) float32, each map projected at its own size.");

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
           int threads, const py::object& out_obj) {
            const auto outs = output_tuple<2>("hypercolumn_keys: out", out_obj);
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
            auto keys = output_array<std::uint64_t>(
                "hypercolumn_keys", "out[0]", outs[0],
                {static_cast<py::ssize_t>(H * W), static_cast<py::ssize_t>(layout.words)});
            auto sums = output_array<float>("hypercolumn_keys", "out[1]", outs[1], {static_cast<py::ssize_t>(H * W)});
            for (const auto& in : ml.arrays)
                if (overlaps(keys, in) || overlaps(sums, in))
                    throw std::invalid_argument("hypercolumn_keys: out: shares memory with maps");
            if (overlaps(keys, sums)) throw std::invalid_argument("hypercolumn_keys: out: keys and sums overlap");
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
        py::arg("threads") = 1, py::kw_only(), py::arg("out") = py::none(),
        "Fused upsample + quantize + pack + weighted sum, never materializing the float hypercolumns.\n"
        "Level of channel c = number of thresholds[c] <= value (thresholds sorted per row).\n"
        "Returns (keys uint64 (H*W, words), sums float32 (H*W,)) where sums = sum_c weights[c] * level_c.\n"
        "out: (keys, sums) arrays of those shapes and dtypes to write into and return (reused buffers: no allocation).");

    m.def(
        "pack_keys",
        [](const py::handle& levels_obj, int levels) {
            const auto levels_arr = as_u8(levels_obj, "levels_array");
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

// ---------------------------------------------------------------- color conversion (color.hpp)
void bind_color(py::module_& m) {
    m.def(
        "rgb_to_lab",
        [](const py::handle& rgb_obj, int threads) {
            const auto rgb = as_u8(rgb_obj, "rgb");
            if (rgb.ndim() < 1 || rgb.shape(rgb.ndim() - 1) != 3)
                throw std::invalid_argument("rgb: expected (..., 3) uint8, got shape " + shape_str(rgb));
            std::vector<py::ssize_t> lshape(rgb.shape(), rgb.shape() + rgb.ndim() - 1), abshape = lshape;
            abshape.push_back(2);
            py::array_t<float> L(lshape), ab(abshape);
            const std::size_t n = static_cast<std::size_t>(L.size());
            float* lp = L.mutable_data();
            float* ap = ab.mutable_data();
            {
                py::gil_scoped_release release;
                rgb_to_lab(rgb.data(), n, lp, ap, threads);
            }
            return py::make_tuple(L, ab);
        },
        py::arg("rgb"), py::arg("threads") = 1,
        "sRGB (..., 3) uint8 -> (L (...), ab (..., 2)) float32, CIE Lab under D65.");

    m.def(
        "lab_to_rgb",
        [](const carray<float>& L, const carray<float>& ab, bool planar, int threads) {
            py::array_t<std::uint8_t> rgb(joined_rgb_shape(L, "L", ab, planar, ""));
            std::uint8_t* rp = rgb.mutable_data();
            const std::size_t n = static_cast<std::size_t>(L.size());
            {
                py::gil_scoped_release release;
                lab_to_rgb(L.data(), ab.data(), n, planar, rp, threads);
            }
            return rgb;
        },
        py::arg("L"), py::arg("ab"), py::arg("planar") = false, py::arg("threads") = 1,
        "CIE Lab -> sRGB (..., 3) uint8. ab is (..., 2), or (2, ...) with planar=True. Colors outside the sRGB\n"
        "gamut keep their lightness and hue; their chroma is reduced until they fit.");

    m.def(
        "gray_to_lightness",
        [](const py::handle& gray_obj) {
            const auto gray = as_u8(gray_obj, "gray");
            py::array_t<float> L(std::vector<py::ssize_t>(gray.shape(), gray.shape() + gray.ndim()));
            float* lp = L.mutable_data();
            const std::size_t n = static_cast<std::size_t>(gray.size());
            {
                py::gil_scoped_release release;
                gray_to_lightness(gray.data(), n, lp);
            }
            return L;
        },
        py::arg("gray"), "uint8 sRGB gray values -> CIE L (float32, same shape).");

    m.def(
        "lightness_to_gray",
        [](const carray<float>& L) {
            py::array_t<float> g(std::vector<py::ssize_t>(L.shape(), L.shape() + L.ndim()));
            float* gp = g.mutable_data();
            const std::size_t n = static_cast<std::size_t>(L.size());
            {
                py::gil_scoped_release release;
                lightness_to_gray(L.data(), n, gp);
            }
            return g;
        },
        py::arg("L"), "CIE L -> gray intensity in [0, 1] (sRGB value of the neutral color of that lightness).");

    m.def(
        "compose_luma",
        [](const py::handle& gray_obj, const py::handle& ab_obj, bool planar, int threads) {
            const auto gray = as_u8(gray_obj, "gray");
            const auto ab = as_real_f32(ab_obj, "ab");
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            py::array_t<std::uint8_t> rgb(joined_rgb_shape(gray, "gray", ab, planar, " float32"));
            std::uint8_t* rp = rgb.mutable_data();
            const std::size_t n = static_cast<std::size_t>(gray.size());
            {
                py::gil_scoped_release release;
                compose_luma(gray.data(), ab.data(), n, planar, rp, threads);
            }
            return rgb;
        },
        py::arg("gray"), py::arg("ab"), py::arg("planar") = false, py::arg("threads") = 1,
        "Join gray (...) uint8 with ab colors -> sRGB (..., 3) uint8 that converts back to exactly gray with\n"
        "Pillow's Image.convert(\"L\") (ITU-R 601 luma, (19595 R + 38470 G + 7471 B + 32768) >> 16), every pixel.\n"
        "ab is (..., 2) float32, or (2, ...) with planar=True. Each pixel is the Lab color (L', a, b) with L' solved\n"
        "so that its luma is gray (not gray_to_lightness(gray): a saturated color is lighter or darker than the\n"
        "neutral of the same luma); where that color is outside sRGB its chroma is reduced, hue kept. A color\n"
        "reduced to (its Pillow luma, its Lab ab) comes back within 1 level per channel.\n"
        "Zero (or non-finite) ab gives R = G = B = gray. The result does not depend on threads.");
}

// ---------------------------------------------------------------- hash table (hash_table.hpp)
// A state vector as a numpy array: (n,) when cols == 1, else (n / cols, cols).
template <typename T>
py::array_t<T> vec_array(const std::vector<T>& v, py::ssize_t cols) {
    const py::ssize_t rows = cols ? static_cast<py::ssize_t>(v.size()) / cols : 0;
    py::array_t<T> a(cols == 1 ? std::vector<py::ssize_t>{rows} : std::vector<py::ssize_t>{rows, cols});
    if (!v.empty()) std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

template <typename T>
std::vector<T> array_vec(const py::dict& d, const char* name, py::ssize_t cols) {
    if (!d.contains(name)) throw std::invalid_argument(std::string("state: missing '") + name + "'");
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(d[name]);
    if (!a) throw py::type_error(std::string("state: '") + name + "' must be a numpy array");
    if (cols > 1 && (a.ndim() != 2 || a.shape(1) != cols) && a.size() != 0)
        throw std::invalid_argument(std::string("state: '") + name + "' has the wrong shape");
    return std::vector<T>(a.data(), a.data() + a.size());
}

py::dict table_state(const HashTable& t) {
    HashTable::State s;
    {
        py::gil_scoped_release release;
        s = t.state();
    }
    py::dict d;
    d["keys"] = vec_array(s.keys, t.words());
    d["meta"] = vec_array(s.meta, 1);
    d["acc_sums"] = vec_array(s.acc_sums, 2);
    d["acc_counts"] = vec_array(s.acc_counts, 1);
    d["ext"] = vec_array(s.ext, 4);
    d["vote_keys"] = vec_array(s.vote_keys, 1);
    d["vote_counts"] = vec_array(s.vote_counts, 1);
    d["vote_sums"] = vec_array(s.vote_sums, 2);
    d["acc_ready"] = s.acc_ready;
    d["bins_complete"] = s.bins_complete;
    return d;
}

std::unique_ptr<HashTable> table_from_state(int channels, int levels, const std::string& policy, double tolerance,
                                            double vote_bin, const py::dict& d) {
    const Policy p = parse_policy(policy);
    const KeyLayout layout(channels, levels);
    HashTable::State s;
    s.keys = array_vec<std::uint64_t>(d, "keys", layout.words);
    s.meta = array_vec<std::uint64_t>(d, "meta", 1);
    s.acc_sums = array_vec<std::int64_t>(d, "acc_sums", 2);
    s.acc_counts = array_vec<std::uint64_t>(d, "acc_counts", 1);
    s.ext = array_vec<std::int32_t>(d, "ext", 4);
    s.vote_keys = array_vec<std::uint64_t>(d, "vote_keys", 1);
    s.vote_counts = array_vec<std::uint32_t>(d, "vote_counts", 1);
    s.vote_sums = array_vec<std::int64_t>(d, "vote_sums", 2);
    s.acc_ready = d.contains("acc_ready") && d["acc_ready"].cast<bool>();
    s.bins_complete = d.contains("bins_complete") && d["bins_complete"].cast<bool>();
    py::gil_scoped_release release;
    if (s.keys.size() == s.meta.size() * static_cast<std::size_t>(layout.words))
        check_keys(s.keys.data(), s.meta.size(), layout, "keys");
    return HashTable::from_state(channels, levels, p, tolerance, vote_bin, s);
}

// A batch query of the table: keys (N, words) -> (ab float32 (N, 2), uint8 (N,)) filled by
// query(keys, n, ab, flags, threads) without the GIL; `validate` rejects keys no packing produces.
template <class Query>
py::tuple table_query(const HashTable& t, const py::handle& keys_obj, int threads, bool validate, Query&& query) {
    if (threads < 0)
        throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
    auto keys = as_keys(keys_obj, t.layout(), "keys");
    const auto n = keys.shape(0);
    py::array_t<float> ab({n, static_cast<py::ssize_t>(2)});
    py::array_t<std::uint8_t> flags(n);
    const std::uint64_t* kp = keys.data();
    float* ap = ab.mutable_data();
    std::uint8_t* fp = flags.mutable_data();
    {
        py::gil_scoped_release release;
        if (validate) check_keys(kp, static_cast<std::size_t>(n), t.layout(), "keys");
        query(kp, static_cast<std::size_t>(n), ap, fp, threads);
    }
    return py::make_tuple(ab, flags);
}

void bind_table(py::module_& m) {
    m.attr("STATUS_MISS") = py::int_(STATUS_MISS);
    m.attr("STATUS_HIT") = py::int_(STATUS_HIT);
    m.attr("STATUS_CONFLICT") = py::int_(STATUS_CONFLICT);

    // (n, 2) ab colors: any real dtype converts to float32; NaN / inf are rejected by the table.
    auto as_ab = [](const py::handle& obj, py::ssize_t n) {
        py::array arr = py::array::ensure(obj);
        if (!arr) throw py::type_error("ab must be a numpy array of (N, 2) float32 Lab ab colors");
        const char kind = arr.dtype().kind();
        if (kind != 'f' && kind != 'i' && kind != 'u')
            throw py::type_error("ab must have a real dtype (float32), got " + std::string(py::str(arr.dtype())));
        if (arr.ndim() != 2 || arr.shape(1) != 2 || arr.shape(0) != n)
            throw std::invalid_argument("ab: expected (" + std::to_string(n) +
                                        ", 2) float32, one (a, b) pair per key, got shape " + shape_str(arr));
        return carray<float>::ensure(arr);
    };
    auto as_counts = [](const py::handle& obj, py::ssize_t n) {
        py::array arr = py::array::ensure(obj);
        if (!arr || (arr.dtype().kind() != 'u' && arr.dtype().kind() != 'i'))
            throw py::type_error("counts must be an integer numpy array (uint32)");
        if (arr.ndim() != 1 || arr.shape(0) != n)
            throw std::invalid_argument("counts: expected (" + std::to_string(n) + ",) uint32, got shape " +
                                        shape_str(arr));
        std::vector<std::uint32_t> out(static_cast<std::size_t>(n));
        auto sat = [](auto v, py::ssize_t i) {
            if (v < 1) throw std::invalid_argument("counts must be >= 1, got " + std::to_string(v) + " at row " +
                                                   std::to_string(i));
            return static_cast<std::uint32_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(v), 0xFFFFFFFFu));
        };
        if (arr.dtype().kind() == 'u') {
            auto a = carray<std::uint64_t>::ensure(arr);
            for (py::ssize_t i = 0; i < n; ++i) out[i] = sat(a.data()[i], i);
        } else {
            auto a = carray<std::int64_t>::ensure(arr);
            for (py::ssize_t i = 0; i < n; ++i) out[i] = sat(a.data()[i], i);
        }
        return out;
    };
    auto as_flags = [](const py::handle& obj, py::ssize_t n) {
        py::array arr = py::array::ensure(obj);
        if (!arr || (arr.dtype().kind() != 'b' && arr.dtype().kind() != 'u' && arr.dtype().kind() != 'i'))
            throw py::type_error("conflicting must be a bool numpy array");
        if (arr.ndim() != 1 || arr.shape(0) != n)
            throw std::invalid_argument("conflicting: expected (" + std::to_string(n) + ",) bool, got shape " +
                                        shape_str(arr));
        return as_bool01(arr);
    };

    py::class_<HashTable> cls(m, "Table", R"doc(
Hash table from packed hypercolumn keys to Lab ab colors, with a conflict policy.

Table(channels, levels, policy="mean", tolerance=12.0, capacity=0, vote_bin=10.0)

Keys are (N, words) uint64 arrays packed by ``pack_keys`` / ``hypercolumn_keys`` for `channels` channels
at `levels` levels (``words == key_words(channels, levels)``); the full key is stored, so a hash collision
is never mistaken for a color conflict. Open addressing with linear probing over a slot array of 32-bit
entry indices (load <= 0.8, grows by 1.5x); entries are stored densely in insertion order, about 24 + 5..7.5
bytes per entry for 2-word keys.

Colors are stored in fixed point with ``AB_SCALE`` = 8192 units per ab unit, range [-128, 128): inputs
outside are clamped, NaN / inf raise ValueError. Counts saturate at ``COUNT_MAX`` (2**21 - 1).

Policies: a key's stored color depends on the set of colors inserted for it, not on their order (exact
integer sums and counts in fixed point), so tables fitted on parts of the data ``merge`` exactly:

- ``"mean"``: the mean color, ``round(sum / n)``.
- ``"mark"`` (the paper): the mean, and the entry is marked conflicting for good when the bounding box of
  its colors is wider than `tolerance` (Euclidean diagonal, ab units; for two colors, their distance);
  ``lookup`` reports it with ``STATUS_CONFLICT`` and ab = 0.
- ``"vote"``: colors vote in bins ``floor(ab / vote_bin)`` per axis; the stored color is the mean of the
  colors in the entry's most frequent bin (a tie goes to the smaller bin, of a first, then of b).

The fitting data (per-entry sums, counts and extremes; per-(entry, bin) counts and sums for vote) is kept
(counted by ``memory_bytes()``) until ``finalize()`` drops it; an entry without it (after ``finalize()`` or
``from_entries()``) is reseeded on the next insert or merge as `count` colors equal to its stored color.
Entries keep first-insertion order; ``merge(other)`` appends other's new keys in other's order.

`tolerance` is used by ``"mark"`` only, `vote_bin` by ``"vote"`` only. `capacity` pre-sizes the table
for that many entries.

Thread safety: any number of threads may call ``lookup`` (and the other readers) concurrently, also
while another thread calls ``insert``: readers share a lock, writers hold it exclusively. All compute
runs with the GIL released.
)doc");
    cls.attr("AB_SCALE") = py::int_(static_cast<int>(HashTable::kAbScale));
    cls.attr("COUNT_MAX") = py::int_(HashTable::kCountMax);

    cls.def(py::init([](int channels, int levels, const std::string& policy, double tolerance, long long capacity,
                        double vote_bin) {
                if (capacity < 0)
                    throw std::invalid_argument("capacity must be >= 0, got " + std::to_string(capacity));
                const Policy p = parse_policy(policy);
                return std::make_unique<HashTable>(channels, levels, p, tolerance,
                                                   static_cast<std::size_t>(capacity), vote_bin);
            }),
            py::arg("channels"), py::arg("levels"), py::arg("policy") = "mean", py::arg("tolerance") = 12.0,
            py::arg("capacity") = 0, py::arg("vote_bin") = 10.0,
            "Empty table for keys of `channels` channels at `levels` levels.\n"
            "policy: 'mark', 'mean' or 'vote'; tolerance: ab distance that marks a conflict (>= 0, 'mark');\n"
            "capacity: entries to pre-size for (>= 0); vote_bin: ab width of a vote bin in [0.01, 256] ('vote').");

    cls.def(
        "insert",
        [as_ab](HashTable& t, const py::handle& keys_obj, const py::handle& ab_obj) {
            auto keys = as_keys(keys_obj, t.layout(), "keys");
            auto ab = as_ab(ab_obj, keys.shape(0));
            const std::uint64_t* kp = keys.data();
            const float* ap = ab.data();
            const auto n = static_cast<std::size_t>(keys.shape(0));
            py::gil_scoped_release release;
            check_keys(kp, n, t.layout(), "keys");
            t.insert(kp, ap, n);
        },
        py::arg("keys"), py::arg("ab"),
        "Insert a batch: keys (N, words) uint64 and their colors ab (N, 2) float32, applied in order under\n"
        "the table's policy. Raises TypeError for non-uint64 keys and ValueError for wrong shapes or\n"
        "non-finite ab (then nothing is inserted). N = 0 is allowed.");

    cls.def(
        "lookup",
        [](const HashTable& t, const py::handle& keys_obj, int threads) {
            return table_query(t, keys_obj, threads, false, [&t](auto... a) { t.lookup(a...); });
        },
        py::arg("keys"), py::arg("threads") = 1,
        "Look up keys (N, words) uint64 -> (ab float32 (N, 2), status uint8 (N,)).\n"
        "status: STATUS_HIT (1) exact hit, STATUS_MISS (0) absent, STATUS_CONFLICT (2) present but marked\n"
        "conflicting; ab is 0 for misses and conflicts. threads: worker threads (0 = all cores).");

    cls.def(
        "lookup_one_step",
        [](const HashTable& t, const py::handle& keys_obj, int threads, bool indexed) {
            return table_query(t, keys_obj, threads, true,
                               [&t, indexed](auto... a) { t.lookup_one_step(a..., indexed); });
        },
        py::arg("keys"), py::arg("threads") = 1, py::arg("indexed") = true,
        "For each key (N, words) uint64, the usable (not conflicting) entries exactly one quantization step\n"
        "away (one channel's level +-1: L2 distance 1, the nearest a missing key can have). Returns (ab float32\n"
        "(N, 2): their mean color, 0 when none; hits uint8 (N,): how many, at most 255). indexed=True reads them\n"
        "from the table's neighbour index (built on first use after a change, up to 4M entries), False probes\n"
        "the 2 * channels keys one by one; both give the same result.");

    cls.def(
        "counts",
        [](const HashTable& t) {
            py::array_t<std::uint32_t> out(static_cast<py::ssize_t>(t.size()));
            std::uint32_t* op = out.mutable_data();
            const auto n = static_cast<std::size_t>(out.shape(0));
            py::gil_scoped_release release;
            t.export_entries(n, nullptr, nullptr, op, nullptr);
            return out;
        },
        "Insertion counts per entry, uint32 (n,), in insertion order (saturating at COUNT_MAX).");

    cls.def(
        "entries",
        [](const HashTable& t) {
            const auto n = static_cast<py::ssize_t>(t.size());
            py::array_t<std::uint64_t> keys({n, static_cast<py::ssize_t>(t.words())});
            py::array_t<float> ab({n, static_cast<py::ssize_t>(2)});
            py::array_t<std::uint32_t> counts(n);
            py::array_t<bool> conflicting(n);
            std::uint64_t* kp = keys.mutable_data();
            float* ap = ab.mutable_data();
            std::uint32_t* cp = counts.mutable_data();
            bool* fp = conflicting.mutable_data();
            {
                py::gil_scoped_release release;
                t.export_entries(static_cast<std::size_t>(n), kp, ap, cp, fp);
            }
            py::dict d;
            d["keys"] = keys;
            d["ab"] = ab;
            d["counts"] = counts;
            d["conflicting"] = conflicting;
            return d;
        },
        "All entries in insertion order: dict(keys=uint64 (n, words), ab=float32 (n, 2), counts=uint32 (n,),\n"
        "conflicting=bool (n,)). ab is the stored color, also for conflicting entries. Feed it back to\n"
        "Table.from_entries to rebuild the table (vote bin data is not included).");

    cls.def_static(
        "from_entries",
        [as_ab, as_counts, as_flags](int channels, int levels, const std::string& policy, double tolerance,
                                     const py::handle& keys_obj, const py::handle& ab_obj,
                                     const py::handle& counts_obj, const py::handle& conflicting_obj,
                                     double vote_bin) {
            const Policy p = parse_policy(policy);
            const KeyLayout layout(channels, levels);
            auto keys = as_keys(keys_obj, layout, "keys");
            const auto n = keys.shape(0);
            auto ab = as_ab(ab_obj, n);
            std::vector<std::uint32_t> counts = as_counts(counts_obj, n);
            auto flags = as_flags(conflicting_obj, n);
            const std::uint64_t* kp = keys.data();
            const float* ap = ab.data();
            const bool* fp = flags.data();
            py::gil_scoped_release release;
            check_keys(kp, static_cast<std::size_t>(n), layout, "keys");
            return HashTable::from_entries(channels, levels, p, tolerance, vote_bin, kp, ap, counts.data(), fp,
                                           static_cast<std::size_t>(n));
        },
        py::arg("channels"), py::arg("levels"), py::arg("policy"), py::arg("tolerance"), py::arg("keys"),
        py::arg("ab"), py::arg("counts"), py::arg("conflicting"), py::arg("vote_bin") = 10.0,
        "Rebuild a table from saved entries (as returned by entries()), keeping their order.\n"
        "Raises ValueError on duplicate keys, counts < 1, non-finite ab or mismatched shapes; counts above\n"
        "COUNT_MAX saturate. A 'vote' table built this way has no bin data: see the class docs.");

    cls.def("merge", [](HashTable& t, const HashTable& other) {
        py::gil_scoped_release release;
        t.merge(other);
    }, py::arg("other"),
       "Add every color fitted into `other` (same channels, levels, policy, tolerance / vote_bin) as if it had\n"
       "been inserted here. Associative and commutative in colors, counts and flags: exact when both tables\n"
       "are exact() (not finalized). other's new keys are appended in its order; other is unchanged.");
    cls.def_property_readonly("exact", &HashTable::exact,
                              "True while the table holds every entry's exact fitting data (not finalized).");
    cls.def("state", [](const HashTable& t) { return table_state(t); },
            "Everything the table holds, fitting data included, as a dict of numpy arrays (see from_state).");
    cls.def_static("from_state", [](int channels, int levels, const std::string& policy, double tolerance,
                                    double vote_bin, const py::dict& state) {
        return table_from_state(channels, levels, policy, tolerance, vote_bin, state);
    }, py::arg("channels"), py::arg("levels"), py::arg("policy"), py::arg("tolerance"), py::arg("vote_bin"),
       py::arg("state"), "The table of state() (ValueError when inconsistent).");
    cls.def(py::pickle(
        [](const HashTable& t) {
            return py::make_tuple(t.layout().channels, t.layout().levels, std::string(policy_name(t.policy())),
                                  t.tolerance(), t.vote_bin(), table_state(t));
        },
        [](const py::tuple& s) {
            if (s.size() != 6) throw std::invalid_argument("Table pickle: expected 6 fields");
            return table_from_state(s[0].cast<int>(), s[1].cast<int>(), s[2].cast<std::string>(),
                                    s[3].cast<double>(), s[4].cast<double>(), s[5].cast<py::dict>());
        }));

    cls.def("shrink_to_fit", [](HashTable& t) {
        py::gil_scoped_release release;
        t.shrink_to_fit();
    }, "Trim allocations to the current size (slot array to load 0.8). Keeps the vote bin data.");
    cls.def("finalize", [](HashTable& t) {
        py::gil_scoped_release release;
        t.finalize();
        t.shrink_to_fit();
    }, "Done fitting: drop the fitting data (sums, counts, extremes, vote bins) and shrink_to_fit(). Inserts\n"
       "and merges still work; entries are then reseeded as `count` colors equal to their stored color.");
    cls.def("memory_bytes", &HashTable::memory_bytes,
            "Bytes allocated by the table (rows, slots, vote bin data; vector capacities).");
    cls.def("vote_records", &HashTable::vote_records,
            "Number of (entry, color bin) records the 'vote' policy currently keeps (0 after finalize()).");
    cls.def("__len__", &HashTable::size, "Number of entries (distinct keys).");
    cls.def_property_readonly("channels", [](const HashTable& t) { return t.layout().channels; },
                              "Channels per key.");
    cls.def_property_readonly("levels", [](const HashTable& t) { return t.layout().levels; },
                              "Quantization levels per channel.");
    cls.def_property_readonly("words", &HashTable::words, "uint64 words per packed key.");
    cls.def_property_readonly("policy", [](const HashTable& t) { return std::string(policy_name(t.policy())); },
                              "Conflict policy: 'mark', 'mean' or 'vote'.");
    cls.def_property_readonly("tolerance", &HashTable::tolerance, "ab distance that marks a conflict ('mark').");
    cls.def_property_readonly("vote_bin", &HashTable::vote_bin, "ab width of a vote bin ('vote').");
    cls.def("__repr__", [](const HashTable& t) {
        std::ostringstream s;
        auto num = [](double v) { return std::string(py::repr(py::float_(v))); };
        s << "Table(channels=" << t.layout().channels << ", levels=" << t.layout().levels
          << ", policy='" << policy_name(t.policy()) << "', tolerance=" << num(t.tolerance());
        if (t.policy() == Policy::vote) s << ", vote_bin=" << num(t.vote_bin());
        s << ", entries=" << t.size() << ", memory_bytes=" << t.memory_bytes() << ")";
        return s.str();
    }, "Table(channels=..., levels=..., policy=..., tolerance=..., entries=..., memory_bytes=...).");
}

// ---------------------------------------------------------------- sorted index (sorted_index.hpp)
void bind_index(py::module_& m) {
    // A read-only numpy view of memory owned by `base` (the index object, kept alive by the view).
    static const auto readonly_view = [](const auto* data, std::vector<py::ssize_t> shape, const py::handle& base) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(data)>>;
        py::array_t<T> a(std::move(shape), data, base);
        a.attr("setflags")(py::arg("write") = false);
        return py::array(std::move(a));
    };
    py::class_<SortedIndex>(m, "SortedIndex",
                            "Entries (packed key -> Lab ab) sorted by a weighted-sum projection of their levels;\n"
                            "nearest stored key by binary search on the projection and an outward scan.\n\n"
                            "Distance between keys = Euclidean distance of their per-channel quantization levels.\n"
                            "Immutable after construction; searches release the GIL and may run concurrently.")
        .def(py::init([](const py::handle& keys_obj, const py::handle& ab_obj, const py::handle& weights_obj,
                         int channels, int levels) {
                 const KeyLayout layout(channels, levels);
                 auto keys = as_keys(keys_obj, layout, "keys");
                 auto ab = carray<float>::ensure(ab_obj);
                 if (!ab) throw py::type_error("ab must be a numpy array convertible to float32");
                 if (ab.ndim() != 2 || ab.shape(1) != 2 || ab.shape(0) != keys.shape(0))
                     throw std::invalid_argument("ab: expected (" + std::to_string(keys.shape(0)) +
                                                 ", 2) float32 (one Lab ab pair per key row), got shape " +
                                                 shape_str(ab));
                 auto weights = carray<float>::ensure(weights_obj);
                 if (!weights) throw py::type_error("weights must be a numpy array convertible to float32");
                 if (weights.ndim() != 1 || weights.shape(0) != channels)
                     throw std::invalid_argument("weights: expected (" + std::to_string(channels) +
                                                 ",) float32 (one per channel), got shape " + shape_str(weights));
                 const std::uint64_t* kp = keys.data();
                 const float* ap = ab.data();
                 const float* wp = weights.data();
                 const auto n = static_cast<std::size_t>(keys.shape(0));
                 py::gil_scoped_release release;
                 return std::make_unique<SortedIndex>(kp, ap, n, wp, layout);
             }),
             py::arg("keys"), py::arg("ab"), py::arg("weights"), py::arg("channels"), py::arg("levels"),
             "keys: (N, words) uint64 packed keys (see pack_keys); ab: (N, 2) float32 colors; weights: (channels,)\n"
             "float32 projection weights, normalized to unit L2 norm internally (all-zero or non-finite -> "
             "ValueError).\nEntries are sorted by projection sum_c w_c * level_c (stable); N = 0 is allowed.")
        .def(
            "search",
            [](const SortedIndex& self, const py::handle& queries_obj, double max_distance, long max_scan,
               bool exact, int threads, std::optional<carray<float>> bounds, bool scan) {
                if (!(max_distance >= 0))
                    throw std::invalid_argument("max_distance must be >= 0 (inf for no limit), got " +
                                                std::to_string(max_distance));
                if (max_scan < 1)
                    throw std::invalid_argument("max_scan must be >= 1, got " + std::to_string(max_scan));
                if (threads < 0)
                    throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " +
                                                std::to_string(threads));
                auto queries = as_keys(queries_obj, self.layout(), "queries");
                const auto m = queries.shape(0);
                py::array_t<std::int64_t> index(m);
                py::array_t<float> distance(m);
                SearchOptions opt;
                opt.max_distance = max_distance;
                opt.max_scan = static_cast<std::size_t>(max_scan);
                opt.exact = exact;
                opt.scan = scan;
                opt.threads = threads;
                if (bounds) {
                    if (bounds->ndim() != 1 || bounds->shape(0) != m)
                        throw std::invalid_argument("bounds: expected (" + std::to_string(m) +
                                                    ",) float32, one per query, got shape " + shape_str(*bounds));
                    opt.bounds = bounds->data();
                }
                const std::uint64_t* qp = queries.data();
                std::int64_t* ip = index.mutable_data();
                float* dp = distance.mutable_data();
                {
                    py::gil_scoped_release release;
                    self.search(qp, static_cast<std::size_t>(m), opt, ip, dp);
                }
                return py::make_tuple(index, distance);
            },
            py::arg("queries"), py::arg("max_distance") = std::numeric_limits<double>::infinity(),
            py::arg("max_scan") = 64, py::arg("exact") = false, py::arg("threads") = 1,
            py::arg("bounds") = py::none(), py::arg("scan") = false,
            "Nearest stored key for each (M, words) uint64 query: binary search of its projection, then an\n"
            "outward scan that advances the side whose projection is closer (exact=True: in runs of 8 entries).\n"
            "Stops at distance 0, and when both sides' projection gaps exceed min(best distance, max_distance)\n"
            "(no closer entry can remain). exact=False also stops after max_scan candidates; exact=True equals\n"
            "brute force. Returns index int64 (M,) into the sorted order (-1 if the index is empty or the best\n"
            "distance found exceeds max_distance: leave that pixel gray) and distance float32 (M,): the best\n"
            "distance found (inf if none; with a finite max_distance the scan is also pruned at max_distance, so\n"
            "for -1 rows it is only an upper bound of the true nearest distance). threads splits the queries\n"
            "(0 = all cores). bounds (M,) float32, optional: a distance another candidate already reaches per\n"
            "query; only entries at most that far are sought (the scan is pruned there), else -1 and inf.\n"
            "For 3-level keys the bounded search runs as a window (the max_scan smallest projection gaps found by\n"
            "binary search, their distances at once): the same index and, for rows found, the same distance as the\n"
            "scan; for -1 rows a distance at most the scan's (both upper bounds). scan=True forces the scan.")
        .def(
            "colors",
            [](const SortedIndex& self, const py::handle& index_obj) {
                py::array arr = py::array::ensure(index_obj);
                if (!arr || (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u'))
                    throw py::type_error("index must be an integer numpy array (as returned by search)");
                if (arr.ndim() != 1)
                    throw std::invalid_argument("index: expected (M,) int64, got shape " + shape_str(arr));
                auto idx = carray<std::int64_t>::ensure(arr);
                if (!idx) throw py::type_error("index must be convertible to int64");
                const auto m = idx.shape(0);
                const auto n = static_cast<std::int64_t>(self.size());
                const std::int64_t* ip = idx.data();
                for (py::ssize_t i = 0; i < m; ++i)
                    if (ip[i] < -1 || ip[i] >= n)
                        throw std::invalid_argument("index: entry " + std::to_string(ip[i]) + " at position " +
                                                    std::to_string(i) + " is out of range for an index of " +
                                                    std::to_string(n) + " entries (-1 means none)");
                py::array_t<float> out({m, static_cast<py::ssize_t>(2)});
                float* op = out.mutable_data();
                const float* ab = self.ab();
                {
                    py::gil_scoped_release release;
                    for (py::ssize_t i = 0; i < m; ++i) {
                        const std::int64_t j = ip[i];
                        op[2 * i] = j < 0 ? 0.0f : ab[2 * j];
                        op[2 * i + 1] = j < 0 ? 0.0f : ab[2 * j + 1];
                    }
                }
                return out;
            },
            py::arg("index"),
            "(M,) indices from search -> (M, 2) float32: the sorted entries' ab colors; -1 -> (0, 0) (gray).")
        .def_property_readonly(
            "ab",
            [](py::object self) {
                const auto& s = self.cast<const SortedIndex&>();
                return readonly_view(s.ab(), {static_cast<py::ssize_t>(s.size()), 2}, self);
            },
            "(N, 2) float32 ab colors in sorted order (read-only view).")
        .def_property_readonly(
            "keys",
            [](py::object self) {
                const auto& s = self.cast<const SortedIndex&>();
                return readonly_view(s.keys(),
                                     {static_cast<py::ssize_t>(s.size()), static_cast<py::ssize_t>(s.layout().words)},
                                     self);
            },
            "(N, words) uint64 keys in sorted order (read-only view).")
        .def_property_readonly(
            "projections",
            [](py::object self) {
                const auto& s = self.cast<const SortedIndex&>();
                return readonly_view(s.projections(), {static_cast<py::ssize_t>(s.size())}, self);
            },
            "(N,) float64 ascending projections sum_c w_c * level_c with unit-norm weights (read-only view).")
        .def_property_readonly(
            "order",
            [](py::object self) {
                const auto& s = self.cast<const SortedIndex&>();
                return readonly_view(s.order(), {static_cast<py::ssize_t>(s.size())}, self);
            },
            "(N,) int64: original row (in the constructor's keys) of each sorted entry (read-only view).")
        .def_property_readonly(
            "weights",
            [](py::object self) {
                const auto& s = self.cast<const SortedIndex&>();
                return readonly_view(s.weights(), {static_cast<py::ssize_t>(s.layout().channels)}, self);
            },
            "(channels,) float64 projection weights after normalization to unit L2 norm (read-only view).")
        .def_property_readonly(
            "channels", [](const SortedIndex& s) { return s.layout().channels; }, "Channels per key.")
        .def_property_readonly(
            "levels", [](const SortedIndex& s) { return s.layout().levels; }, "Quantization levels per channel.")
        .def_property_readonly(
            "words", [](const SortedIndex& s) { return s.layout().words; }, "64-bit words per packed key.")
        .def("__len__", &SortedIndex::size, "Number of stored entries.")
        .def("memory_bytes", &SortedIndex::memory_bytes,
             "Bytes held by this index (keys, colors, projections, order, weights; the shared 64-128 KiB\n"
             "distance tables are not counted).")
        .def("__repr__", [](const SortedIndex& s) {
            std::ostringstream o;
            o << "SortedIndex(n=" << s.size() << ", channels=" << s.layout().channels
              << ", levels=" << s.layout().levels << ", words=" << s.layout().words
              << ", memory_bytes=" << s.memory_bytes() << ")";
            return o.str();
        });
}

// ---------------------------------------------------------------- neighbor seeds (neighbor_seeds.hpp)
void bind_seeds(py::module_& m) {
    m.def(
        "neighbor_seeds",
        [](const py::handle& keys_obj, const carray<std::uint8_t>& found, long H, long W, int channels, int levels,
           int radius, int threads, const py::object& pixels_obj) {
            const KeyLayout layout(channels, levels);
            auto keys = as_keys(keys_obj, layout, "keys");
            check_size(H, W);
            if (keys.shape(0) != H * W)
                throw std::invalid_argument("keys: expected H*W = " + std::to_string(H * W) + " rows, got " +
                                            std::to_string(keys.shape(0)));
            if (found.ndim() != 1 || found.shape(0) != H * W)
                throw std::invalid_argument("found: expected (" + std::to_string(H * W) + ",) flags, got shape " +
                                            shape_str(found));
            if (radius < 0) throw std::invalid_argument("radius must be >= 0, got " + std::to_string(radius));
            radius = static_cast<int>(std::min<long>(radius, std::max(H, W)));  // a larger window adds nothing
            if (!pixels_obj.is_none()) {
                py::array parr = py::array::ensure(pixels_obj);
                if (!parr || (parr.dtype().kind() != 'i' && parr.dtype().kind() != 'u'))
                    throw py::type_error("pixels must be an integer numpy array of pixel indices");
                if (parr.ndim() != 1)
                    throw std::invalid_argument("pixels: expected (M,) pixel indices, got shape " + shape_str(parr));
                auto pix = carray<std::int64_t>::ensure(parr);
                const std::size_t m = static_cast<std::size_t>(pix.shape(0));
                const std::int64_t* pp = pix.data();
                for (std::size_t i = 0; i < m; ++i)
                    if (pp[i] < 0 || pp[i] >= H * W)
                        throw std::invalid_argument("pixels: index " + std::to_string(pp[i]) + " at " +
                                                    std::to_string(i) + " is outside 0.." + std::to_string(H * W - 1));
                py::array_t<std::int64_t> seed(static_cast<py::ssize_t>(m));
                py::array_t<float> distance(static_cast<py::ssize_t>(m));
                std::int64_t* sp = seed.mutable_data();
                float* dp = distance.mutable_data();
                {
                    py::gil_scoped_release release;
                    neighbor_seeds_at(keys.data(), found.data(), static_cast<int>(H), static_cast<int>(W), layout,
                                      radius, pp, m, sp, dp, threads);
                }
                return py::make_tuple(seed, distance);
            }
            py::array_t<std::int64_t> seed(H * W);
            py::array_t<float> distance(H * W);
            std::int64_t* sp = seed.mutable_data();
            float* dp = distance.mutable_data();
            {
                py::gil_scoped_release release;
                neighbor_seeds(keys.data(), found.data(), static_cast<int>(H), static_cast<int>(W), layout, radius,
                               sp, dp, threads);
            }
            return py::make_tuple(seed, distance);
        },
        py::arg("keys"), py::arg("found"), py::arg("H"), py::arg("W"), py::arg("channels"), py::arg("levels"),
        py::arg("radius") = 1, py::arg("threads") = 1, py::arg("pixels") = py::none(),
        "For an (H*W, words) key image and per-pixel found flags: for each pixel not found, the found pixel\n"
        "within a (2*radius+1)^2 window whose key is nearest. Returns (seed int64 (H*W,): that pixel's index,\n"
        "itself when found, -1 when none; distance float32 (H*W,): its key distance, 0 when found, inf when none).\n"
        "pixels (M,) int, optional: only those pixels, outputs (M,) in their order (equal to the full result there).");
}

// ---------------------------------------------------------------- the lookup chain (lookup_chain.hpp)
void bind_lookup_chain(py::module_& m) {
    m.attr("LOOKUP_GRAY") = py::int_(LOOKUP_GRAY);
    m.attr("LOOKUP_EXACT") = py::int_(LOOKUP_EXACT);
    m.attr("LOOKUP_NEAREST") = py::int_(LOOKUP_NEAREST);
    m.def(
        "lookup_chain",
        [](const HashTable& table, const SortedIndex& index, const py::handle& keys_obj, long H, long W,
           bool one_step, double max_distance, long max_scan, bool exact, int seed_radius, int threads, bool memo,
           const py::object& out_obj) {
            const auto outs = output_tuple<3>("lookup_chain: out", out_obj);
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            if (!(max_distance >= 0))
                throw std::invalid_argument("max_distance must be >= 0 (inf for no limit), got " +
                                            std::to_string(max_distance));
            if (max_scan < 1) throw std::invalid_argument("max_scan must be >= 1, got " + std::to_string(max_scan));
            if (seed_radius < 0)
                throw std::invalid_argument("seed_radius must be >= 0, got " + std::to_string(seed_radius));
            if (index.layout() != table.layout())
                throw std::invalid_argument("index: its keys' layout differs from the table's");
            check_size(H, W);
            auto keys = as_keys(keys_obj, table.layout(), "keys");
            if (keys.shape(0) != H * W)
                throw std::invalid_argument("keys: expected " + std::to_string(H * W) + " keys for a " +
                                            std::to_string(H) + "x" + std::to_string(W) + " image, got " +
                                            std::to_string(keys.shape(0)));
            const auto n = static_cast<py::ssize_t>(H * W);
            auto ab = output_array<float>("lookup_chain", "out[0]", outs[0], {n, static_cast<py::ssize_t>(2)}, {&keys});
            auto status = output_array<std::uint8_t>("lookup_chain", "out[1]", outs[1], {n}, {&keys, &ab});
            auto distance = output_array<float>("lookup_chain", "out[2]", outs[2], {n}, {&keys, &ab, &status});
            ChainOptions opt;
            opt.one_step = one_step;
            opt.max_distance = max_distance;
            opt.max_scan = static_cast<std::size_t>(max_scan);
            opt.exact = exact;
            opt.seed_radius = static_cast<int>(std::min<long>(seed_radius, std::max(H, W)));
            opt.threads = threads;
            opt.memo = memo;
            const std::uint64_t* kp = keys.data();
            float* ap = ab.mutable_data();
            std::uint8_t* sp = status.mutable_data();
            float* dp = distance.mutable_data();
            {
                py::gil_scoped_release release;
                check_keys(kp, static_cast<std::size_t>(n), table.layout(), "keys");
                lookup_chain(table, index, kp, static_cast<int>(H), static_cast<int>(W), opt, ap, sp, dp);
            }
            return py::make_tuple(ab, status, distance);
        },
        py::arg("table"), py::arg("index"), py::arg("keys"), py::arg("H"), py::arg("W"), py::arg("one_step") = true,
        py::arg("max_distance") = 5.0, py::arg("max_scan") = 64, py::arg("exact") = false, py::arg("seed_radius") = 1,
        py::arg("threads") = 1, py::arg("memo") = true, py::kw_only(), py::arg("out") = py::none(),
        "The whole lookup chain of an H x W image's (H*W, words) keys in one call: exact hits, one-step probes,\n"
        "neighbor seeds + sorted index, gray; the fallback once per distinct missing key. Returns (ab float32\n"
        "(H*W, 2), status uint8 (H*W,) LOOKUP_GRAY/EXACT/NEAREST, distance float32 (H*W,)). Scratch memory is\n"
        "kept per calling thread. hyperchroma.lookup.lookup is the same chain in Python.\n"
        "memo: first recall the answers the calling thread's previous call found for its distinct missing keys\n"
        "(when the table, index and options are the same; consecutive film frames share most of them) and keep\n"
        "this call's for the next. The output is the same either way; clear_lookup_memo() forgets every thread's.\n"
        "out: (ab, status, distance) arrays of those shapes and dtypes to write into and return (no allocation).");
    m.def("clear_lookup_memo", [] { clear_lookup_memo(); },
          "Forget every thread's lookup_chain miss memo (to time unrelated images; results never depend on it).");
}

// ---------------------------------------------------------------- median filter (median_filter.hpp)
void bind_median(py::module_& m) {
    // Filters img as T (its dtype, checked by the caller): only non-contiguous input is copied (to C order).
    const auto run = [](auto* type_tag, const py::array& img, std::int64_t size, int threads,
                        const py::object& out_obj) -> py::array {
        using T = std::remove_pointer_t<decltype(type_tag)>;
        auto a = carray<T>::ensure(img);
        if (!a) throw py::error_already_set();
        const auto H = static_cast<std::size_t>(a.shape(0)), W = static_cast<std::size_t>(a.shape(1));
        const auto C = a.ndim() == 3 ? static_cast<std::size_t>(a.shape(2)) : std::size_t{1};
        auto out = output_array<T>("median_filter", "out", out_obj,
                                   std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()), {&a});
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
        [run](const py::handle& obj, std::int64_t size, int threads, const py::object& out_obj) -> py::array {
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
            return is_f32 ? run(static_cast<float*>(nullptr), img, size, threads, out_obj)
                          : run(static_cast<std::uint8_t*>(nullptr), img, size, threads, out_obj);
        },
        py::arg("img"), py::arg("size"), py::arg("threads") = 1, py::kw_only(), py::arg("out") = py::none(),
        "Exact median filter over size x size windows with replicated edges.\n\n"
        "img: (H,W) or (H,W,C) numpy array, float32 or uint8 (other dtypes raise TypeError; nothing is cast).\n"
        "Any strides are accepted. Each channel of an (H,W,C) image is filtered on its own.\n"
        "size: odd window side >= 1; it may exceed the image (edges are replicated as far as needed).\n"
        "threads: 1 runs on the calling thread; n > 1 splits the rows over n threads; 0 uses all hardware\n"
        "threads. The result does not depend on threads.\n\n"
        "Returns a new array of the same shape and dtype (or out: a C-contiguous writeable one of that shape and\n"
        "dtype, not overlapping img, written and returned), equal to\n"
        "scipy.ndimage.median_filter(img, size=(size, size[, 1]), mode='nearest') and to cv2.medianBlur\n"
        "(where OpenCV supports the case).\n\n"
        "NaN (float32): values are ordered by IEEE totalOrder with every NaN above +inf, so an output is NaN\n"
        "exactly when more than half of its window is NaN (scipy and OpenCV leave this unspecified and differ).\n"
        "-0.0 sorts below +0.0. Except for size 1 (a plain copy), NaN outputs are the canonical quiet NaN.\n\n"
        "Speed: sizes 3, 5 and 7 use pruned sorting networks vectorized across pixels (SIMD chosen at run\n"
        "time; needs (size-1)*C <= 512); other uint8 sizes a sliding histogram, O(size) per pixel; other\n"
        "float32 sizes a sorted window slid along each row, O(size^2) per pixel.");
}

// ---------------------------------------------------------------- guided filter (guided_filter.hpp)
void bind_guided(py::module_& m) {
    m.def(
        "guided_filter",
        [](const py::handle& guide_obj, const py::handle& src_obj, std::int64_t radius, double eps, int threads,
           const py::object& out_obj) {
            const auto guide = as_real_f32(guide_obj, "guide");
            const auto src = as_real_f32(src_obj, "src");
            if (guide.ndim() != 2)
                throw std::invalid_argument("guided_filter: guide: expected an (h,w) float32 gray image, got shape " +
                                            shape_str(guide));
            if (guide.shape(0) < 1 || guide.shape(1) < 1)
                throw std::invalid_argument("guided_filter: empty guide of shape " + shape_str(guide));
            if ((src.ndim() != 2 && src.ndim() != 3) || src.shape(0) != guide.shape(0) ||
                src.shape(1) != guide.shape(1) || (src.ndim() == 3 && src.shape(2) < 1))
                throw std::invalid_argument("guided_filter: src: expected (" + std::to_string(guide.shape(0)) + "," +
                                            std::to_string(guide.shape(1)) + ",C) or (" +
                                            std::to_string(guide.shape(0)) + "," + std::to_string(guide.shape(1)) +
                                            ") float32 (the guide's size), got shape " + shape_str(src));
            if (radius < 0)
                throw std::invalid_argument("guided_filter: radius must be >= 0 (0 returns src), got " +
                                            std::to_string(radius));
            if (!(eps > 0.0) || !std::isfinite(eps))
                throw std::invalid_argument("guided_filter: eps must be a finite number > 0 (in guide units squared), "
                                            "got " + std::to_string(eps));
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            const auto H = static_cast<std::size_t>(guide.shape(0)), W = static_cast<std::size_t>(guide.shape(1));
            const auto C = src.ndim() == 3 ? static_cast<std::size_t>(src.shape(2)) : std::size_t{1};
            auto out = output_array<float>("guided_filter", "out", out_obj,
                                           std::vector<py::ssize_t>(src.shape(), src.shape() + src.ndim()),
                                           {&guide, &src});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                guided_filter(guide.data(), src.data(), dst, H, W, C, radius, eps, threads);
            }
            return out;
        },
        py::arg("guide"), py::arg("src"), py::arg("radius"), py::arg("eps"), py::arg("threads") = 1, py::kw_only(),
        py::arg("out") = py::none(),
        "Guided filter (He et al., box-filter form): edge-aware smoothing of src steered by guide.\n\n"
        "guide: (h,w) gray image; src: (h,w,C) (e.g. ab, C = 2) or (h,w), same h and w. Both are read as float32\n"
        "(float64 and integer arrays are cast; complex, bool and other dtypes raise TypeError). Any strides.\n"
        "Values must be finite (NaN or inf raise ValueError).\n"
        "radius: window (2*radius+1)^2, >= 0; 0 returns a copy of src; larger than the image is fine.\n"
        "eps: regularization > 0 in guide units squared: edges of the guide with a contrast well above sqrt(eps)\n"
        "are kept, flatter regions are smoothed (guide in 0..255: eps = 100 keeps edges of >> 10 levels).\n"
        "Box means are normalized by the number of pixels of the window inside the image (the paper's N),\n"
        "accumulated in double. O(1) per pixel in radius. The result does not depend on threads.\n"
        "out: a C-contiguous writeable float32 array shaped like src, not overlapping guide or src, to write into.\n"
        "Returns a new float32 array shaped like src (or out): q = mean(a) * guide + mean(b), a = cov(I,p) / (var(I) + eps),\n"
        "b = mean(p) - a * mean(I), per channel of src.");
}

// ---------------------------------------------------------------- fused 1x1 + ReLU + KxK convolution (pwl_conv.hpp)
// The conv kernels' shared checks: leading pads of a KxK kernel, and the (N,C,H,W) float32 output (new, or the
// caller's `out` when it has exactly that shape and can be written).
void check_conv_pads(const char* fn, int pad_top, int pad_left, int K, int threads) {
    if (pad_top < 0 || pad_top > K - 1 || pad_left < 0 || pad_left > K - 1)
        throw std::invalid_argument(std::string(fn) + ": pads must be in 0.." + std::to_string(K - 1));
    if (threads < 0)
        throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
}

py::array_t<float> conv_out(const char* fn, const py::object& out_obj, std::size_t N, std::size_t C, std::size_t H,
                            std::size_t W, const py::array& input) {
    return output_array<float>(fn, "out", out_obj,
                               {static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(H),
                                static_cast<py::ssize_t>(W)},
                               {&input});
}

void bind_pwl_conv(py::module_& m) {
    m.def(
        "pwl_conv",
        [](const py::handle& L_obj, const py::handle& breaks_obj, const py::handle& A_obj, const py::handle& B_obj,
           const py::handle& bias_obj, int pad_top, int pad_left, py::object out_obj, int threads) {
            const auto L = as_real_f32(L_obj, "L");
            const auto br = as_real_f32(breaks_obj, "breaks");
            const auto A = as_real_f32(A_obj, "A");
            const auto B = as_real_f32(B_obj, "B");
            const auto bias = as_real_f32(bias_obj, "bias");
            if (L.ndim() != 3 || L.shape(0) < 1 || L.shape(1) < 1 || L.shape(2) < 1)
                throw std::invalid_argument("pwl_conv: L: expected a non-empty (N,H,W) float32 map, got shape " +
                                            shape_str(L));
            if (A.ndim() != 4 || A.shape(0) < 1 || A.shape(1) < 1 || A.shape(3) % 8 != 0 || A.shape(3) > 64 ||
                A.shape(1) > 256)
                throw std::invalid_argument("pwl_conv: A: expected (K,K,S,Cpad) float32 with S <= 256 and Cpad a "
                                            "multiple of 8 up to 64, got shape " + shape_str(A));
            if (A.shape(0) != A.shape(1))
                throw std::invalid_argument("pwl_conv: A: expected a square kernel (K,K,S,Cpad), got shape " +
                                            shape_str(A));
            const int K = static_cast<int>(A.shape(0)), S = static_cast<int>(A.shape(2));
            const int CP = static_cast<int>(A.shape(3));
            if (B.ndim() != 4 || B.shape(0) != K || B.shape(1) != K || B.shape(2) != S || B.shape(3) != CP)
                throw std::invalid_argument("pwl_conv: B: expected the shape of A " + shape_str(A) + ", got " +
                                            shape_str(B));
            if (br.ndim() != 1 || br.shape(0) != S - 1)
                throw std::invalid_argument("pwl_conv: breaks: expected (" + std::to_string(S - 1) +
                                            ",) float32 (S - 1 ascending breakpoints), got shape " + shape_str(br));
            for (int k = 1; k < S - 1; ++k)
                if (!(br.data()[k - 1] <= br.data()[k]))
                    throw std::invalid_argument("pwl_conv: breaks must be ascending");
            if (bias.ndim() != 1 || bias.shape(0) < 1 || bias.shape(0) > CP)
                throw std::invalid_argument("pwl_conv: bias: expected (Cout,) float32 with Cout <= " +
                                            std::to_string(CP) + ", got shape " + shape_str(bias));
            check_conv_pads("pwl_conv", pad_top, pad_left, K, threads);
            const auto N = static_cast<std::size_t>(L.shape(0)), H = static_cast<std::size_t>(L.shape(1)),
                       W = static_cast<std::size_t>(L.shape(2));
            const auto cout = static_cast<std::size_t>(bias.shape(0));
            py::array_t<float> out = conv_out("pwl_conv", out_obj, N, cout, H, W, L);
            PwlConv p;
            p.K = K, p.pad_top = pad_top, p.pad_left = pad_left, p.segments = S;
            p.cout = static_cast<int>(cout), p.cpad = CP;
            p.breaks = br.data(), p.A = A.data(), p.B = B.data(), p.bias = bias.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                for (std::size_t i = 0; i < N; ++i) pwl_conv(p, L.data() + i * H * W, H, W, dst + i * cout * H * W, threads);
            }
            return out;
        },
        py::arg("L"), py::arg("breaks"), py::arg("A"), py::arg("B"), py::arg("bias"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("out") = py::none(), py::arg("threads") = 1,
        "conv_KxK(relu(w * L + b)) + bias (stride 1, zero padding, output the size of L) from the one-channel maps\n"
        "L (N,H,W), through the piecewise-linear tables of hyperchroma.classifier.fused: breaks (S-1,) ascending,\n"
        "A and B (K,K,S,Cpad): a neighbour of value l in segment s (the number of breaks < l) at kernel tap\n"
        "(ky,kx) adds A[ky,kx,s] * l + B[ky,kx,s]. pad_top / pad_left: the convolution's leading pads. Returns\n"
        "(N,Cout,H,W) float32 (Cout = len(bias)), written into out when given. Not bitwise equal to the two\n"
        "convolutions (the sums are regrouped).");
}

void bind_pool_conv(py::module_& m) {
    m.def(
        "pool_conv",
        [](const py::handle& x_obj, const py::handle& w_obj, const py::handle& bias_obj, int pad_top, int pad_left,
           bool pool, py::object out_obj, int threads) {
            const auto x = as_real_f32(x_obj, "x");
            const auto w = as_real_f32(w_obj, "weights");
            const auto bias = as_real_f32(bias_obj, "bias");
            if (x.ndim() != 4 || x.shape(0) < 1 || x.shape(1) < 1 || x.shape(2) < 1 || x.shape(3) < 1)
                throw std::invalid_argument("pool_conv: x: expected a non-empty (N,C,H,W) float32 map, got shape " +
                                            shape_str(x));
            if (w.ndim() != 4 || w.shape(0) < 1 || w.shape(1) != x.shape(1) || w.shape(2) != w.shape(3) ||
                w.shape(2) < 1)
                throw std::invalid_argument("pool_conv: weights: expected (Cout," + std::to_string(x.shape(1)) +
                                            ",K,K) float32, got shape " + shape_str(w));
            const int K = static_cast<int>(w.shape(2));
            if (bias.ndim() != 1 || bias.shape(0) != w.shape(0))
                throw std::invalid_argument("pool_conv: bias: expected (" + std::to_string(w.shape(0)) +
                                            ",) float32, got shape " + shape_str(bias));
            check_conv_pads("pool_conv", pad_top, pad_left, K, threads);
            const auto N = static_cast<std::size_t>(x.shape(0)), C = static_cast<std::size_t>(x.shape(1)),
                       H = static_cast<std::size_t>(x.shape(2)), W = static_cast<std::size_t>(x.shape(3));
            const std::size_t Ho = pool ? H / 2 : H, Wo = pool ? W / 2 : W;
            if (Ho < 1 || Wo < 1)
                throw std::invalid_argument("pool_conv: x: too small to pool, shape " + shape_str(x));
            const auto cout = static_cast<std::size_t>(w.shape(0));
            py::array_t<float> out = conv_out("pool_conv", out_obj, N, cout, Ho, Wo, x);
            PoolConv p;
            p.cin = static_cast<int>(C), p.cout = static_cast<int>(cout), p.K = K;
            p.pad_top = pad_top, p.pad_left = pad_left, p.pool = pool;
            p.weights = w.data(), p.bias = bias.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                for (std::size_t i = 0; i < N; ++i) pool_conv(p, x.data() + i * C * H * W, H, W, dst + i * cout * Ho * Wo, threads);
            }
            return out;
        },
        py::arg("x"), py::arg("weights"), py::arg("bias"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("pool") = true, py::arg("out") = py::none(), py::arg("threads") = 1,
        "conv_KxK(maxpool_2x2_stride_2(x)) + bias (pool=False: no pool), stride 1, zero padding (pad_top /\n"
        "pad_left leading), output the pooled size, from x (N,C,H,W) float32 (the pool floors odd sizes).\n"
        "weights (Cout,C,K,K), bias (Cout,). Returns (N,Cout,Ho,Wo) float32, written into out when given. Equal\n"
        "to the two operators up to float rounding (sums in input-channel, row, column order).");
}

}  // namespace

// ---------------------------------------------------------------- classifier input (resample.hpp)
void bind_resample(py::module_& m) {
    m.def(
        "resize_gray",
        [](const py::handle& gray_obj, long h, long w, int threads, const py::object& out_obj) {
            const auto gray = as_u8(gray_obj, "gray");
            if (gray.ndim() != 2 || gray.shape(0) < 1 || gray.shape(1) < 1)
                throw std::invalid_argument("gray: expected a non-empty (H, W) uint8 image, got shape " +
                                            shape_str(gray));
            if (threads < 0)
                throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
            check_size(h, w);
            constexpr long kMax = (1L << 31) - 1;
            if (gray.shape(0) > kMax || gray.shape(1) > kMax)
                throw std::invalid_argument("gray: image too large " + shape_str(gray));
            auto out = output_array<float>("resize_gray", "out", out_obj,
                                           {static_cast<py::ssize_t>(h), static_cast<py::ssize_t>(w)}, {&gray});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                resize_gray(gray.data(), static_cast<int>(gray.shape(0)), static_cast<int>(gray.shape(1)),
                            static_cast<int>(h), static_cast<int>(w), dst, threads);
            }
            return out;
        },
        py::arg("gray"), py::arg("h"), py::arg("w"), py::arg("threads") = 1, py::kw_only(), py::arg("out") = py::none(),
        "gray (H, W) uint8 scaled to [0, 1] (times float32(1/255)) and resized to (h, w) float32 with Pillow's\n"
        "antialiased BILINEAR filter, bit for bit Image.fromarray(gray * np.float32(1/255), 'F').resize((w, h),\n"
        "BILINEAR). The result does not depend on threads. out: an (h, w) float32 array to write into and return (C-contiguous,\n"
        "writeable, not overlapping gray), so repeated calls do not allocate.");
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "hyperchroma's C++ core: hypercolumn keys, hash table, sorted index, median filter, guided filter.";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::length_error& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });
    bind_hypercolumns(m);
    bind_color(m);
    bind_unique_keys(m);
    bind_compose_grid(m);
    bind_detail_sampling(m);
    bind_table(m);
    bind_index(m);
    bind_seeds(m);
    bind_lookup_chain(m);
    bind_median(m);
    bind_guided(m);
    bind_pwl_conv(m);
    bind_pool_conv(m);
    bind_resample(m);
}
