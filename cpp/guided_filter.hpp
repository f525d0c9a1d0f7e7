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
// the thread count. Memory: 2*C doubles per pixel for a and b, plus O((W + 2r) * C) per band.
#pragma once

#include <algorithm>
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

// Rows per band: fixed by r (never by the thread count), so the summation order, and thus every bit of the
// result, is the same for any number of threads. Restarting a band costs 2r+1 rows; a band is >= 4r rows.
inline std::size_t band_rows(std::size_t r) { return std::max<std::size_t>(32, 4 * r); }

// Window means of K planar quantities over an H x W image, for output rows [y0, y1).
// row(y, buf) returns quantity k of pixel (y, x) at [k * W + x], either written into buf (K*W doubles) or held
// elsewhere; out(y, m) receives m[k * W + x] = window mean.
template <class RowFn, class OutFn>
void box_means(std::size_t H, std::size_t W, std::size_t K, std::size_t r, std::size_t y0, std::size_t y1,
               RowFn&& row, OutFn&& out) {
    const std::size_t n = K * W;
    std::vector<double> col(n, 0.0), in(n), gone(n), pre(W + 1), mean(n);
    // Column sums over rows [lo, hi] of the window of y0.
    const std::size_t lo0 = y0 >= r ? y0 - r : 0, hi0 = std::min(H - 1, y0 + r);
    for (std::size_t y = lo0; y <= hi0; ++y) {
        slide(col.data(), row(y, in.data()), nullptr, n);
    }
    for (std::size_t y = y0; y < y1; ++y) {
        if (y > y0) {
            const bool enter = y + r < H, leave = y >= r + 1;
            const double* add = enter ? row(y + r, in.data()) : nullptr;
            const double* sub = leave ? row(y - r - 1, gone.data()) : nullptr;
            if (add) slide(col.data(), add, sub, n);
            else if (sub) subtract(col.data(), sub, n);
        }
        const std::size_t lo = y >= r ? y - r : 0, hi = std::min(H - 1, y + r);
        const double rows = static_cast<double>(hi - lo + 1);
        for (std::size_t k = 0; k < K; ++k) {
            const double* c = col.data() + k * W;
            pre[0] = 0.0;
            for (std::size_t x = 0; x < W; ++x) pre[x + 1] = pre[x] + c[x];
            double* m = mean.data() + k * W;
            for (std::size_t x = 0; x < W; ++x) {
                const std::size_t a = x >= r ? x - r : 0, b = std::min(W, x + r + 1);
                m[x] = (pre[b] - pre[a]) / (rows * static_cast<double>(b - a));
            }
        }
        out(y, mean.data());
    }
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
    if (radius == 0) {  // 1x1 windows: var_I = 0, cov_Ip = 0, so a = 0 and b = p
        std::copy(src, src + H * W * C, dst);
        return;
    }
    // A window wider than the image covers all of it: clip r so the index arithmetic stays small.
    const std::size_t r = static_cast<std::size_t>(std::min<std::int64_t>(radius, static_cast<std::int64_t>(std::max(H, W))));
    const std::size_t band = guided::band_rows(r), bands = (H + band - 1) / band;

    // Pass 1: a and b per pixel and channel, planar per row: ab[(y * 2C + k) * W + x], k < C is a, k >= C is b.
    std::vector<double> ab(H * W * 2 * C);
    const std::size_t K1 = 2 + 2 * C;  // I, I*I, p_c, I*p_c
    parallel_for(bands, threads, 1, [&](std::size_t b0, std::size_t b1) {
        auto row = [&](std::size_t y, double* v) -> const double* {
            const float* g = guide + y * W;
            const float* p = src + y * W * C;
            for (std::size_t x = 0; x < W; ++x) {
                const double I = g[x];
                v[x] = I;
                v[W + x] = I * I;
                for (std::size_t c = 0; c < C; ++c) {
                    const double pc = p[x * C + c];
                    v[(2 + c) * W + x] = pc;
                    v[(2 + C + c) * W + x] = I * pc;
                }
            }
            return v;
        };
        auto out = [&](std::size_t y, const double* m) {
            double* dstrow = ab.data() + y * 2 * C * W;
            for (std::size_t x = 0; x < W; ++x) {
                const double mI = m[x], var = std::max(0.0, m[W + x] - mI * mI);
                for (std::size_t c = 0; c < C; ++c) {
                    const double mp = m[(2 + c) * W + x], cov = m[(2 + C + c) * W + x] - mI * mp;
                    const double a = cov / (var + eps);
                    dstrow[c * W + x] = a;
                    dstrow[(C + c) * W + x] = mp - a * mI;
                }
            }
        };
        for (std::size_t bi = b0; bi < b1; ++bi)
            guided::box_means(H, W, K1, r, bi * band, std::min(H, (bi + 1) * band), row, out);
    });

    // Pass 2: q = mean(a) * I + mean(b).
    const std::size_t K2 = 2 * C;
    parallel_for(bands, threads, 1, [&](std::size_t b0, std::size_t b1) {
        auto row = [&](std::size_t y, double*) -> const double* { return ab.data() + y * K2 * W; };
        auto out = [&](std::size_t y, const double* m) {
            const float* g = guide + y * W;
            float* q = dst + y * W * C;
            for (std::size_t x = 0; x < W; ++x)
                for (std::size_t c = 0; c < C; ++c)
                    q[x * C + c] = static_cast<float>(m[c * W + x] * g[x] + m[(C + c) * W + x]);
        };
        for (std::size_t bi = b0; bi < b1; ++bi)
            guided::box_means(H, W, K2, r, bi * band, std::min(H, (bi + 1) * band), row, out);
    });
}

}  // namespace hyperchroma
