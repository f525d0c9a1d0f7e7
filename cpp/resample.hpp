// The classifier's input: a uint8 gray image scaled to [0, 1] (v * float32(1/255), in float32, as numpy does)
// and resized with the antialiased triangle ("bilinear") filter of Pillow's libImaging/Resample.c, restated:
// - per axis, scale = in / out, filterscale = max(scale, 1), support = filterscale (the triangle's radius 1,
//   widened when reducing); output x's window is [xmin, xmin + n) with xmin = (int)(center - support + 0.5)
//   clamped at 0, n = min((int)(center + support + 0.5), in) - xmin, center = (x + 0.5) * scale, and its
//   weights triangle((i + xmin - center + 0.5) / filterscale), normalized by their sum, in double;
// - a horizontal pass over the input rows the vertical pass needs (skipped when the width is unchanged), then
//   a vertical pass (skipped when the height is unchanged); each output is a double sum, ss = 0; ss += v * k
//   in window order, stored as float.
// That is Image.fromarray(gray * np.float32(1 / 255), "F").resize((w, h), BILINEAR) bit for bit whenever Pillow
// runs the horizontal pass first (Pillow 13 runs the vertical pass first for some sizes, which changes the last
// bit of some values; the result here does not depend on the Pillow version). tests/test_resample.py checks
// both against a plain numpy statement of the same sums.
// The horizontal pass runs over 8 rows at once (interleaved, one vector lane per row) and the vertical pass
// over a row of double accumulators; each output's terms are added in window order in both, so vectorizing
// changes nothing. The functions are compiled for AVX2 (which has no FMA) and the baseline only: a fused
// multiply-add would round differently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

namespace hyperchroma {

namespace detail {

// One axis's windows and weights: window o is [first[o], first[o] + count[o]); its weights are
// k[o * ksize .. o * ksize + ksize), zero past count[o] (so a sum over all ksize terms adds exact zeros).
struct ResampleAxis {
    int ksize = 1;
    std::vector<int> first, count;
    std::vector<double> k;

    ResampleAxis() = default;
    ResampleAxis(int in, int out) : first(static_cast<std::size_t>(out)), count(static_cast<std::size_t>(out)) {
        const double scale = static_cast<double>(static_cast<float>(in)) / out;
        const double filterscale = scale < 1.0 ? 1.0 : scale;
        const double support = filterscale;  // bilinear: support 1, widened by the scale
        ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
        k.assign(static_cast<std::size_t>(out) * static_cast<std::size_t>(ksize), 0.0);
        const double ss = 1.0 / filterscale;
        for (int o = 0; o < out; ++o) {
            const double center = (o + 0.5) * scale;
            int lo = static_cast<int>(center - support + 0.5);
            if (lo < 0) lo = 0;
            int hi = static_cast<int>(center + support + 0.5);
            if (hi > in) hi = in;
            const int n = hi - lo;
            double* w = &k[static_cast<std::size_t>(o) * static_cast<std::size_t>(ksize)];
            double ww = 0.0;
            for (int i = 0; i < n; ++i) {
                double x = (i + lo - center + 0.5) * ss;
                if (x < 0.0) x = -x;
                w[i] = x < 1.0 ? 1.0 - x : 0.0;
                ww += w[i];
            }
            if (ww != 0.0)
                for (int i = 0; i < n; ++i) w[i] /= ww;
            first[static_cast<std::size_t>(o)] = lo;
            count[static_cast<std::size_t>(o)] = n;
        }
    }
};

// Horizontal pass of kLanes rows at once: src holds them interleaved (src[x * kLanes + r] = row r's value x as
// double, then ksize zero columns), dst[r] receives row r's w outputs. Each output's sum runs over its window
// in order, lane r for row r; two outputs at a time, so four independent chains of additions hide their
// latency. The shorter window's loop runs on over weights that are exact zeros, adding exact zeros (at the
// right edge into the zero columns: a window clipped there is shorter than the one before it). GCC vectors of
// 4 doubles (AVX2, or SSE2 pairs in the baseline clone) keep the sums in registers.
constexpr std::size_t kLanes = 8;
#if defined(__GNUC__) || defined(__clang__)
typedef double resample_vd __attribute__((vector_size(32)));
#define HYPERCHROMA_RESAMPLE_VECTORS 1
#else
#define HYPERCHROMA_RESAMPLE_VECTORS 0
#endif

HYPERCHROMA_CLONES_NO_FMA inline void resample_rows(const double* src, const ResampleAxis& ax, int w,
                                                   float* const* dst) {
    const std::size_t ks = static_cast<std::size_t>(ax.ksize);
    int o = 0;
#if HYPERCHROMA_RESAMPLE_VECTORS
    for (; o + 1 < w; o += 2) {
        const std::size_t u = static_cast<std::size_t>(o), v = u + 1;
        const double* k0 = &ax.k[u * ks];
        const double* k1 = &ax.k[v * ks];
        const double* s0 = src + static_cast<std::size_t>(ax.first[u]) * kLanes;
        const double* s1 = src + static_cast<std::size_t>(ax.first[v]) * kLanes;
        const int n = std::max(ax.count[u], ax.count[v]);
        resample_vd a0 = {}, b0 = {}, a1 = {}, b1 = {};
        for (int i = 0; i < n; ++i) {
            const std::size_t off = static_cast<std::size_t>(i) * kLanes;
            resample_vd x0, y0, x1, y1;
            std::memcpy(&x0, s0 + off, sizeof x0);
            std::memcpy(&y0, s0 + off + 4, sizeof y0);
            std::memcpy(&x1, s1 + off, sizeof x1);
            std::memcpy(&y1, s1 + off + 4, sizeof y1);
            const double w0 = k0[i], w1 = k1[i];
            a0 += x0 * w0;
            b0 += y0 * w0;
            a1 += x1 * w1;
            b1 += y1 * w1;
        }
        for (std::size_t r = 0; r < 4; ++r) {
            dst[r][u] = static_cast<float>(a0[r]);
            dst[r + 4][u] = static_cast<float>(b0[r]);
            dst[r][v] = static_cast<float>(a1[r]);
            dst[r + 4][v] = static_cast<float>(b1[r]);
        }
    }
#endif
    for (; o < w; ++o) {
        const std::size_t u = static_cast<std::size_t>(o);
        const double* k0 = &ax.k[u * ks];
        const double* s0 = src + static_cast<std::size_t>(ax.first[u]) * kLanes;
        double a0[kLanes] = {};
        for (int i = 0; i < ax.count[u]; ++i)
            for (std::size_t r = 0; r < kLanes; ++r) a0[r] += s0[static_cast<std::size_t>(i) * kLanes + r] * k0[i];
        for (std::size_t r = 0; r < kLanes; ++r) dst[r][u] = static_cast<float>(a0[r]);
    }
}

// src[x * kLanes + r] = lut[g[r][x]] for x < W.
inline void interleave_rows(const std::uint8_t* const* g, const double* lut, std::size_t W, double* src) {
    for (std::size_t x = 0; x < W; ++x)
        for (std::size_t r = 0; r < kLanes; ++r) src[x * kLanes + r] = lut[g[r][x]];
}

// Vertical pass of one output row: rows[i] (W floats each, i < n) weighted by k[i] -> dst.
HYPERCHROMA_CLONES_NO_FMA inline void resample_column(const float* const* rows, const double* k, int n, int W,
                                                      double* acc, float* dst) {
    for (int x = 0; x < W; ++x) acc[x] = 0.0;
    for (int i = 0; i < n; ++i) {
        const float* r = rows[i];
        const double w = k[i];
        for (int x = 0; x < W; ++x) acc[x] += static_cast<double>(r[x]) * w;
    }
    for (int x = 0; x < W; ++x) dst[x] = static_cast<float>(acc[x]);
}

// Each thread's buffers, kept between calls (no allocation once they have grown to the sizes in use), and
// the last axes it computed.
struct ResampleScratch {
    std::vector<double> src, acc;
    std::vector<float> mid, tail;
    std::vector<const float*> rows;
    int ax_in = -1, ax_out = -1, ay_in = -1, ay_out = -1;
    ResampleAxis ax, ay;
};

inline ResampleScratch& resample_scratch() {
    thread_local ResampleScratch s;
    return s;
}

inline const ResampleAxis& cached_axis(ResampleAxis& a, int& in_memo, int& out_memo, int in, int out) {
    if (in_memo != in || out_memo != out) {
        a = ResampleAxis(in, out);
        in_memo = in;
        out_memo = out;
    }
    return a;
}

}  // namespace detail

// gray (H, W) uint8 -> out (h, w) float32, see the top of this file. A second thread helps only with large
// images (waking it costs about what it saves on a 720x528 -> 224x164 resize, ~0.3 ms on one core).
inline void resize_gray(const std::uint8_t* gray, int H, int W, int h, int w, float* out, int threads = 1) {
    const float unit = static_cast<float>(1.0 / 255.0);  // np.float32(1 / 255)
    double lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = static_cast<double>(static_cast<float>(v) * unit);
    const bool horizontal = w != W, vertical = h != H;
    const std::size_t sW = static_cast<std::size_t>(W), sw = static_cast<std::size_t>(w);
    if (!horizontal && !vertical) {
        const std::size_t n = static_cast<std::size_t>(H) * sW;
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(lut[gray[i]]);
        return;
    }
    constexpr std::size_t kMinGroups = 48, kMinRows = 256;  // per thread: 384 rows in, 256 rows out
    detail::ResampleScratch& S = detail::resample_scratch();
    const detail::ResampleAxis& ax = detail::cached_axis(S.ax, S.ax_in, S.ax_out, W, w);
    const detail::ResampleAxis& ay = detail::cached_axis(S.ay, S.ay_in, S.ay_out, H, h);
    // the input rows the vertical pass reads (all when the height is unchanged)
    const int y0 = vertical ? ay.first[0] : 0;
    const int y1 = vertical ? ay.first[static_cast<std::size_t>(h - 1)] + ay.count[static_cast<std::size_t>(h - 1)] : H;
    const std::size_t rows = static_cast<std::size_t>(y1 - y0);
    float* hdst = out;  // the horizontal pass's rows y0 .. y1, or the output when only the width changes
    if (vertical) {
        S.mid.resize(rows * (horizontal ? sw : sW));
        hdst = S.mid.data();
    }
    if (horizontal) {
        constexpr std::size_t L = detail::kLanes;
        parallel_for((rows + L - 1) / L, threads, kMinGroups, [&](std::size_t b, std::size_t e) {
            detail::ResampleScratch& T = detail::resample_scratch();
            const std::size_t pad = static_cast<std::size_t>(ax.ksize) * L;  // zero columns past the row
            T.src.resize(sW * L + pad);
            std::fill(T.src.end() - static_cast<std::ptrdiff_t>(pad), T.src.end(), 0.0);
            double* src = T.src.data();
            for (std::size_t q = b; q < e; ++q) {
                float* dst[L];
                const std::uint8_t* g[L];
                for (std::size_t r = 0; r < L; ++r) {
                    const std::size_t row = q * L + r;
                    if (row < rows) {
                        g[r] = gray + (static_cast<std::size_t>(y0) + row) * sW;
                        dst[r] = hdst + row * sw;
                    } else {  // past the last row: a lane (of row y0's values) computed into a spare row
                        g[r] = gray + static_cast<std::size_t>(y0) * sW;
                        T.tail.resize(sw);
                        dst[r] = T.tail.data();
                    }
                }
                detail::interleave_rows(g, lut, sW, src);
                detail::resample_rows(src, ax, w, dst);
            }
        });
    } else {  // only the height changes: the vertical pass reads the scaled input rows
        const std::uint8_t* g = gray + static_cast<std::size_t>(y0) * sW;
        for (std::size_t i = 0; i < rows * sW; ++i) hdst[i] = static_cast<float>(lut[g[i]]);
    }
    if (!vertical) return;
    const std::size_t cw = horizontal ? sw : sW;  // the intermediate rows' width (= the output's)
    parallel_for(static_cast<std::size_t>(h), threads, kMinRows, [&](std::size_t b, std::size_t e) {
        detail::ResampleScratch& T = detail::resample_scratch();
        T.acc.resize(cw);
        T.rows.resize(static_cast<std::size_t>(ay.ksize));
        for (std::size_t o = b; o < e; ++o) {
            const int n = ay.count[o];
            for (int i = 0; i < n; ++i)
                T.rows[static_cast<std::size_t>(i)] = hdst + static_cast<std::size_t>(ay.first[o] - y0 + i) * cw;
            detail::resample_column(T.rows.data(), &ay.k[o * static_cast<std::size_t>(ay.ksize)], n,
                                    static_cast<int>(cw), T.acc.data(), out + o * cw);
        }
    });
}

}  // namespace hyperchroma
