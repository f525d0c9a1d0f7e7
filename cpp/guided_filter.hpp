// Guided filter (He, Sun, Tang, "Guided Image Filtering", ECCV 2010 / TPAMI 2013, Algorithm 1): edge-aware
// smoothing of a C-channel source p (here the ab colors) steered by a gray guide I of the same size.
//
//   mean_I = f(I), mean_p = f(p), corr_I = f(I*I), corr_Ip = f(I*p)
//   var_I = corr_I - mean_I^2, cov_Ip = corr_Ip - mean_I * mean_p
//   a = cov_Ip / (var_I + eps), b = mean_p - a * mean_I
//   q = f(a) * I + f(b)
//
// f is the mean over the (2r+1) x (2r+1) window clipped to the image: window sum / number of pixels in it (the
// paper's N = f_sum(1)), so edges use only real pixels. Each channel of p gets its own a, b; I is shared.
//
// Cost is O(1) per pixel in r: window sums are column sums slid down the rows (add the row entering, subtract
// the row leaving) and prefix sums along each row. Accumulation is in double (no catastrophic cancellation in
// var_I = E[I^2] - E[I]^2 for 8-bit-range guides). Rows are cut into bands of a height that depends only on r,
// each band restarting its column sums, and bands are run by parallel_for, so the result does not depend on
// the thread count. Memory: 2*C doubles per pixel for a and b, plus 5 * (2 + 2C) * W doubles per running band.
// Inputs must be finite (checked: a NaN or inf would stay in the running sums for the rest of its band).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

namespace hyperchroma {
namespace guided {

// col[i] += add[i] - sub[i] (sub may be null).
HYPERCHROMA_CLONES inline void slide(double* col, const double* add, const double* sub, std::size_t n) {
    if (sub)
        for (std::size_t i = 0; i < n; ++i) col[i] += add[i] - sub[i];
    else
        for (std::size_t i = 0; i < n; ++i) col[i] += add[i];
}

inline void subtract(double* col, const double* sub, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) col[i] -= sub[i];
}

// Prefix sums of a row of K interleaved quantities, pre[(x + 1) * K + k] = sum of col[x' * K + k] for x' <= x,
// with the K running sums in registers (a compile-time K lets the compiler keep them there and vectorize).
template <std::size_t K>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void prefix_fixed(const double* col, double* pre, std::size_t W) {
    double acc[K] = {};
    for (std::size_t k = 0; k < K; ++k) pre[k] = 0.0;
    for (std::size_t x = 0; x < W; ++x)
        for (std::size_t k = 0; k < K; ++k) {
            acc[k] += col[x * K + k];
            pre[(x + 1) * K + k] = acc[k];
        }
}

// Horizontal window means of one row of column sums (K interleaved quantities): prefix sums along the row
// (the K chains run side by side), then (pre[x + r + 1] - pre[x - r]) / count, clipped at the row's ends.
HYPERCHROMA_CLONES inline void prefix_means(const double* col, double* pre, double* mean, std::size_t W,
                                            std::size_t K, std::size_t r, double inv_rows, const double* inv_cols) {
    switch (K) {
        case 2: prefix_fixed<2>(col, pre, W); break;
        case 4: prefix_fixed<4>(col, pre, W); break;
        case 6: prefix_fixed<6>(col, pre, W); break;
        case 8: prefix_fixed<8>(col, pre, W); break;
        default:
            for (std::size_t k = 0; k < K; ++k) pre[k] = 0.0;
            for (std::size_t j = 0; j < W * K; ++j) pre[j + K] = pre[j] + col[j];
    }
    const std::size_t left = std::min(W, r + 1);        // x < left: window starts at 0
    const std::size_t right = W > r ? W - r : 0;        // x >= right: window ends at W - 1
    for (std::size_t x = 0; x < W; ++x) {
        if (x >= left && x < right) {  // interior run: one vectorizable loop
            const double* hiP = pre + (x + r + 1) * K;
            const double* loP = pre + (x - r) * K;
            const std::size_t m = (right - x) * K;
            const double s = inv_rows * inv_cols[x];  // interior windows all have 2r + 1 columns
            double* dst = mean + x * K;
            for (std::size_t j = 0; j < m; ++j) dst[j] = (hiP[j] - loP[j]) * s;
            x = right - 1;
            continue;
        }
        const std::size_t a = x >= r ? x - r : 0, b = std::min(W, x + r + 1);
        const double s = inv_rows * inv_cols[x];
        for (std::size_t k = 0; k < K; ++k) mean[x * K + k] = (pre[b * K + k] - pre[a * K + k]) * s;
    }
}

// Rows per band: fixed by r (never by the thread count), so the summation order, and thus every bit of the
// result, is the same for any number of threads. Restarting a band costs 2r+1 rows; a band is >= 4r rows.
inline std::size_t band_rows(std::size_t r) { return std::max<std::size_t>(32, 4 * r); }

// Window means of K interleaved quantities over an H x W image, for output rows [y0, y1).
// row(y, buf) returns quantity k of pixel (y, x) at [x * K + k], either written into buf (W*K doubles) or held
// elsewhere; out(y, m) receives m[x * K + k] = window mean. inv_cols[x] = 1 / (columns in x's window).
template <class RowFn, class OutFn>
void box_means(std::size_t H, std::size_t W, std::size_t K, std::size_t r, std::size_t y0, std::size_t y1,
               const double* inv_cols, RowFn&& row, OutFn&& out) {
    const std::size_t n = K * W;
    thread_local std::vector<double> buf;  // the thread's, kept: no allocation once grown
    if (buf.size() < 5 * n + K) buf.resize(5 * n + K);
    double* const col = buf.data();
    double* const in = col + n;
    double* const gone = in + n;
    double* const mean = gone + n;
    double* const pre = mean + n;  // n + K
    std::fill(col, col + n, 0.0);
    // Column sums over rows [lo, hi] of the window of y0.
    const std::size_t lo0 = y0 >= r ? y0 - r : 0, hi0 = std::min(H - 1, y0 + r);
    for (std::size_t y = lo0; y <= hi0; ++y) slide(col, row(y, in), nullptr, n);
    for (std::size_t y = y0; y < y1; ++y) {
        if (y > y0) {
            const bool enter = y + r < H, leave = y >= r + 1;
            const double* add = enter ? row(y + r, in) : nullptr;
            const double* sub = leave ? row(y - r - 1, gone) : nullptr;
            if (add) slide(col, add, sub, n);
            else if (sub) subtract(col, sub, n);
        }
        const std::size_t lo = y >= r ? y - r : 0, hi = std::min(H - 1, y + r);
        prefix_means(col, pre, mean, W, K, r, 1.0 / static_cast<double>(hi - lo + 1), inv_cols);
        out(y, mean);
    }
}

}  // namespace guided

namespace guided {
// The two passes for CC channels known at compile time (CC = 0: C at run time).
template <std::size_t CC>
void guided_passes(const float* guide, const float* src, float* dst, std::size_t H, std::size_t W,
                   std::size_t C_runtime, std::size_t r, double eps, int threads) {
    const std::size_t C = CC ? CC : C_runtime;
    const std::size_t band = band_rows(r), bands = (H + band - 1) / band;
    // A thread is worth starting for about 64k pixels or more (each pass starts its own).
    const std::size_t min_bands = std::max<std::size_t>(1, (std::size_t{1} << 16) / (band * W));
    // the calling thread's, kept; the helpers read it through this pointer (a thread_local named inside a lambda
    // would be the running thread's own)
    thread_local std::vector<double> inv_cols_buf;
    inv_cols_buf.resize(W);
    double* const inv_cols = inv_cols_buf.data();
    for (std::size_t x = 0; x < W; ++x)
        inv_cols[x] = 1.0 / static_cast<double>(std::min(W, x + r + 1) - (x >= r ? x - r : 0));

    // Pass 1: a and b per pixel, interleaved: ab[(y * W + x) * 2C + k], k < C is a_k, k >= C is b_(k-C).
    // every element is written by pass 1; the calling thread's buffer, kept for its next call (no per-call
    // allocation once grown; the helpers only write into it)
    thread_local std::vector<double> ab_buf;
    if (ab_buf.size() < H * W * 2 * C) ab_buf.resize(H * W * 2 * C);
    struct {
        double* p;
        double* get() const { return p; }
    } ab{ab_buf.data()};
    const std::size_t K1 = 2 + 2 * C;  // I, I*I, p_c..., I*p_c...
    parallel_for(bands, threads, min_bands, [&](std::size_t b0, std::size_t b1) {
        auto row = [&](std::size_t y, double* v) -> const double* {
            const float* g = guide + y * W;
            const float* p = src + y * W * C;
            for (std::size_t x = 0; x < W; ++x) {
                const double I = g[x];
                double* o = v + x * K1;
                o[0] = I;
                o[1] = I * I;
                for (std::size_t c = 0; c < C; ++c) {
                    const double pc = p[x * C + c];
                    o[2 + c] = pc;
                    o[2 + C + c] = I * pc;
                }
            }
            return v;
        };
        auto out = [&](std::size_t y, const double* m) {
            double* dst_row = ab.get() + y * W * 2 * C;
            for (std::size_t x = 0; x < W; ++x) {
                const double* mx = m + x * K1;
                const double mI = mx[0], inv = 1.0 / (std::max(0.0, mx[1] - mI * mI) + eps);
                double* o = dst_row + x * 2 * C;
                for (std::size_t c = 0; c < C; ++c) {
                    const double mp = mx[2 + c], a = (mx[2 + C + c] - mI * mp) * inv;
                    o[c] = a;
                    o[C + c] = mp - a * mI;
                }
            }
        };
        for (std::size_t bi = b0; bi < b1; ++bi)
            box_means(H, W, K1, r, bi * band, std::min(H, (bi + 1) * band), inv_cols, row, out);
    });

    // Pass 2: q = mean(a) * I + mean(b).
    const std::size_t K2 = 2 * C;
    parallel_for(bands, threads, min_bands, [&](std::size_t b0, std::size_t b1) {
        auto row = [&](std::size_t y, double*) -> const double* { return ab.get() + y * W * K2; };
        auto out = [&](std::size_t y, const double* m) {
            const float* g = guide + y * W;
            float* q = dst + y * W * C;
            for (std::size_t x = 0; x < W; ++x)
                for (std::size_t c = 0; c < C; ++c)
                    q[x * C + c] = static_cast<float>(m[x * K2 + c] * g[x] + m[x * K2 + C + c]);
        };
        for (std::size_t bi = b0; bi < b1; ++bi)
            box_means(H, W, K2, r, bi * band, std::min(H, (bi + 1) * band), inv_cols, row, out);
    });
}

}  // namespace guided

// guide (H,W) float32, src (H,W,C) float32 (channels interleaved) -> dst (H,W,C) float32.
// radius >= 0 (0 copies src), eps > 0 in guide units squared. Windows larger than the image are clipped to it.
inline void guided_filter(const float* guide, const float* src, float* dst, std::size_t H, std::size_t W,
                          std::size_t C, std::int64_t radius, double eps, int threads = 1) {
    if (radius < 0) throw std::invalid_argument("guided_filter: radius must be >= 0, got " + std::to_string(radius));
    if (!(eps > 0.0) || !(eps < 1e300))
        throw std::invalid_argument("guided_filter: eps must be a finite number > 0, got " + std::to_string(eps));
    if (H == 0 || W == 0 || C == 0) return;
    for (std::size_t i = 0; i < H * W; ++i)
        if (!std::isfinite(guide[i]))
            throw std::invalid_argument("guided_filter: guide has a non-finite value (NaN or inf) at pixel " +
                                        std::to_string(i) + "; replace them first (e.g. np.nan_to_num)");
    for (std::size_t i = 0; i < H * W * C; ++i)
        if (!std::isfinite(src[i]))
            throw std::invalid_argument("guided_filter: src has a non-finite value (NaN or inf) at element " +
                                        std::to_string(i) + "; replace them first (e.g. np.nan_to_num)");
    if (radius == 0) {  // 1x1 windows: var_I = 0, cov_Ip = 0, so a = 0 and b = p
        std::copy(src, src + H * W * C, dst);
        return;
    }
    // A window wider than the image covers all of it: clip r so the index arithmetic stays small.
    const std::size_t r =
        static_cast<std::size_t>(std::min<std::int64_t>(radius, static_cast<std::int64_t>(std::max(H, W))));

    switch (C) {
        case 1: guided::guided_passes<1>(guide, src, dst, H, W, C, r, eps, threads); break;
        case 2: guided::guided_passes<2>(guide, src, dst, H, W, C, r, eps, threads); break;
        case 3: guided::guided_passes<3>(guide, src, dst, H, W, C, r, eps, threads); break;
        default: guided::guided_passes<0>(guide, src, dst, H, W, C, r, eps, threads);
    }
}

}  // namespace hyperchroma
