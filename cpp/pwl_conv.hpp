// A KxK convolution (stride 1, zero padding, group 1) of relu(w * L + b), the 1x1 convolution of a one-channel
// map L followed by a ReLU, computed from L directly. Each relu(w_k * l + b_k) is linear in l between the
// breakpoints -b_k / w_k, so for one kernel tap o the contribution of a neighbour with value l is A[o][s] * l +
// B[o][s], s the segment of l (how many breakpoints lie below it), with A and B (Cout vectors) summed over the
// channels active in that segment (classifier/fused.py builds them). That is K*K * 2 flops per output channel and
// pixel instead of K*K * C1 * 2: the shipped classifier's conv1 (1 -> 15, 1x1) + ReLU + conv2 (15 -> 25, 3x3),
// the bulk of its compute, in one pass. Equal to the two convolutions up to float rounding (the sums are
// regrouped); a neighbour outside the image contributes nothing (the 1x1 map is zero-padded, not relu(b)).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors only between always-inlined functions
#endif

namespace hyperchroma {

struct PwlConv {
    int K = 3, pad_top = 1, pad_left = 1;  // output (H, W): pad_top + pad_bottom = pad_left + pad_right = K - 1
    int segments = 1;                      // S: breakpoints + 1
    int cout = 1, cpad = 8;                // output channels, rounded up to 8 in A and B
    const float* breaks = nullptr;         // S - 1, ascending
    const float* A = nullptr;              // (K*K, S, cpad)
    const float* B = nullptr;              // (K*K, S, cpad)
    const float* bias = nullptr;           // cout
};

namespace detail {

inline std::vector<std::uint8_t>& pwl_scratch() {
    thread_local std::vector<std::uint8_t> s;
    return s;
}

// Segment of every pixel of rows [b, e): how many breakpoints are < l (NaN: 0). Vectorized across pixels.
HYPERCHROMA_CLONES inline void pwl_segments(const PwlConv& p, const float* L, std::size_t W, std::size_t b,
                                            std::size_t e, std::uint8_t* seg) {
    const int nb = p.segments - 1;
    const std::size_t n = (e - b) * W;
    const float* l = L + b * W;
    std::uint8_t* s = seg + b * W;
    for (std::size_t i = 0; i < n; ++i) s[i] = 0;
    for (int k = 0; k < nb; ++k) {
        const float t = p.breaks[k];
        for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<std::uint8_t>(s[i] + (t < l[i]));
    }
}

// One output pixel (y, x) into out (CP floats, CP a compile-time multiple of 8: the sums stay in registers,
// 8-float GCC vectors, AVX2 or SSE pairs per clone). Always inlined: an out-of-line helper would be compiled once,
// for the baseline, and called from every clone. Border pixels check each neighbour; interior ones do not.
#if defined(__GNUC__) || defined(__clang__)
#define HYPERCHROMA_PWL_INLINE __attribute__((always_inline)) inline
typedef float pwl_vf __attribute__((vector_size(32)));
#else
#define HYPERCHROMA_PWL_INLINE inline
#endif
template <int CP, bool Border>
HYPERCHROMA_PWL_INLINE void pwl_pixel(const PwlConv& p, const float* L, const std::uint8_t* seg, std::ptrdiff_t H,
                                      std::ptrdiff_t W, std::ptrdiff_t y, std::ptrdiff_t x, float* out) {
    const int K = p.K, S = p.segments;
#if defined(__GNUC__) || defined(__clang__)
    constexpr int NV = CP / 8;
    pwl_vf acc[NV], accb[NV];
    for (int v = 0; v < NV; ++v) acc[v] = pwl_vf{}, accb[v] = pwl_vf{};
#else
    float acc[CP], accb[CP];
    for (int c = 0; c < CP; ++c) acc[c] = 0.0f, accb[c] = 0.0f;
#endif
    for (int ky = 0; ky < K; ++ky) {
        const std::ptrdiff_t ny = y + ky - p.pad_top;
        if (Border && (ny < 0 || ny >= H)) continue;
        for (int kx = 0; kx < K; ++kx) {
            const std::ptrdiff_t nx = x + kx - p.pad_left;
            if (Border && (nx < 0 || nx >= W)) continue;
            const std::size_t i = static_cast<std::size_t>(ny * W + nx);
            const float l = L[i];
            const std::size_t row = (static_cast<std::size_t>(ky * K + kx) * static_cast<std::size_t>(S) + seg[i]) * CP;
            const float* a = p.A + row;
            const float* bb = p.B + row;
#if defined(__GNUC__) || defined(__clang__)
            const pwl_vf lv = {l, l, l, l, l, l, l, l};
            for (int v = 0; v < NV; ++v) {
                pwl_vf av, bv;
                std::memcpy(&av, a + 8 * v, sizeof av);
                std::memcpy(&bv, bb + 8 * v, sizeof bv);
                acc[v] += av * lv;
                accb[v] += bv;
            }
#else
            for (int c = 0; c < CP; ++c) acc[c] += a[c] * l, accb[c] += bb[c];
#endif
        }
    }
#if defined(__GNUC__) || defined(__clang__)
    for (int v = 0; v < NV; ++v) {
        const pwl_vf r = acc[v] + accb[v];
        std::memcpy(out + 8 * v, &r, sizeof r);
    }
#else
    for (int c = 0; c < CP; ++c) out[c] = acc[c] + accb[c];
#endif
}

// Output rows [b, e), 8 pixels at a time into a tile t[u][c], then written channel by channel (runs of 8).
template <int CP>
HYPERCHROMA_CLONES void pwl_rows(const PwlConv& p, const float* L, const std::uint8_t* seg, std::size_t H,
                                 std::size_t W, std::size_t b, std::size_t e, float* out) {
    constexpr int U = 8;
    const std::size_t plane = H * W;
    const auto h = static_cast<std::ptrdiff_t>(H), w = static_cast<std::ptrdiff_t>(W);
    const std::ptrdiff_t x_lo = p.pad_left, x_hi = w - (p.K - 1 - p.pad_left);  // interior columns [x_lo, x_hi)
    alignas(32) float t[U * CP];
    for (std::size_t y = b; y < e; ++y) {
        const auto yy = static_cast<std::ptrdiff_t>(y);
        const bool row_inside = yy >= p.pad_top && yy < h - (p.K - 1 - p.pad_top);
        for (std::size_t x0 = 0; x0 < W; x0 += U) {
            const int nu = static_cast<int>(std::min<std::size_t>(U, W - x0));
            for (int u = 0; u < nu; ++u) {
                const std::ptrdiff_t x = static_cast<std::ptrdiff_t>(x0) + u;
                if (row_inside && x >= x_lo && x < x_hi)
                    pwl_pixel<CP, false>(p, L, seg, h, w, yy, x, t + u * CP);
                else
                    pwl_pixel<CP, true>(p, L, seg, h, w, yy, x, t + u * CP);
            }
            if (nu == U) {  // a whole tile: fixed trip counts
                for (int c = 0; c < p.cout; ++c) {
                    float* dst = out + static_cast<std::size_t>(c) * plane + y * W + x0;
                    const float b0 = p.bias[c];
                    for (int u = 0; u < U; ++u) dst[u] = t[u * CP + c] + b0;
                }
            } else {
                for (int c = 0; c < p.cout; ++c) {
                    float* dst = out + static_cast<std::size_t>(c) * plane + y * W + x0;
                    const float b0 = p.bias[c];
                    for (int u = 0; u < nu; ++u) dst[u] = t[u * CP + c] + b0;
                }
            }
        }
    }
}

}  // namespace detail

// out (cout, H, W) from L (H, W); p checked by the caller (cpad <= 64, segments <= 256).
inline void pwl_conv(const PwlConv& p, const float* L, std::size_t H, std::size_t W, float* out, int threads) {
    auto& seg = detail::pwl_scratch();
    if (seg.size() < H * W) seg.resize(H * W);
    std::uint8_t* s = seg.data();
    parallel_for(H, threads, 8, [&](std::size_t b, std::size_t e) { detail::pwl_segments(p, L, W, b, e, s); });
    auto rows = [&](auto cp) {
        parallel_for(H, threads, 8, [&](std::size_t b, std::size_t e) {
            detail::pwl_rows<decltype(cp)::value>(p, L, s, H, W, b, e, out);
        });
    };
    switch (p.cpad) {
        case 8: rows(std::integral_constant<int, 8>{}); break;
        case 16: rows(std::integral_constant<int, 16>{}); break;
        case 24: rows(std::integral_constant<int, 24>{}); break;
        case 32: rows(std::integral_constant<int, 32>{}); break;
        case 40: rows(std::integral_constant<int, 40>{}); break;
        case 48: rows(std::integral_constant<int, 48>{}); break;
        case 56: rows(std::integral_constant<int, 56>{}); break;
        default: rows(std::integral_constant<int, 64>{}); break;
    }
}

}  // namespace hyperchroma

namespace hyperchroma {

// A 2x2 stride-2 max pool (floor; or none) then a KxK convolution (stride 1, zero padding, group 1, output the
// pooled size) of a few-channel output: the shipped classifier's pool1 + conv3 (25 -> 4, 5x5), which ONNX
// Runtime runs at a fraction of its speed elsewhere (its kernels want 8+ output channels). Direct form: the pooled
// map zero-padded in a scratch buffer, 8 output pixels of 4 output channels per step (8-float vectors), each
// input load shared by 4 multiply-adds. Sums in (ci, ky, kx) order from the bias: equal to the convolution up to
// float rounding.
struct PoolConv {
    int cin = 1, cout = 1, K = 1, pad_top = 0, pad_left = 0;
    bool pool = true;
    const float* weights = nullptr;  // (cout, cin, K, K)
    const float* bias = nullptr;     // cout
};

namespace detail {

inline std::vector<float>& pool_conv_scratch() {
    thread_local std::vector<float> s;
    return s;
}

// Output rows [b, e) of channels [co0, co0 + G) (G <= 4) from the padded pooled map P (cin planes of Hp x Wp).
template <int G>
HYPERCHROMA_CLONES void pool_conv_rows(const PoolConv& p, int co0, const float* P, std::size_t Hp, std::size_t Wp,
                                       std::size_t Ho, std::size_t Wo, std::size_t b, std::size_t e, float* out) {
    const int K = p.K;
    const std::size_t plane = Hp * Wp;
    for (std::size_t y = b; y < e; ++y) {
#if defined(__GNUC__) || defined(__clang__)
        // Two 8-pixel blocks at a time where the row has them: 2 * G independent sums, enough to hide the
        // multiply-add latency (one block's G chains were latency-bound). Each sum runs in the same order.
        for (std::size_t x0 = 0; x0 < Wo; x0 += 16) {
            const bool two = x0 + 8 < Wo;
            pwl_vf acc[G], acc2[G];
            for (int g = 0; g < G; ++g) {
                const float bb = p.bias[co0 + g];
                acc[g] = pwl_vf{bb, bb, bb, bb, bb, bb, bb, bb};
                acc2[g] = acc[g];
            }
            for (int ci = 0; ci < p.cin; ++ci) {
                const float* src = P + static_cast<std::size_t>(ci) * plane + y * Wp + x0;
                const float* wc = p.weights + (static_cast<std::size_t>(co0) * p.cin + ci) * K * K;
                const std::size_t wstride = static_cast<std::size_t>(p.cin) * K * K;  // to the next channel out
                for (int ky = 0; ky < K; ++ky) {
                    const float* r = src + static_cast<std::size_t>(ky) * Wp;
                    for (int kx = 0; kx < K; ++kx) {
                        pwl_vf v, v2;
                        std::memcpy(&v, r + kx, sizeof v);
                        std::memcpy(&v2, r + kx + (two ? 8 : 0), sizeof v2);
                        for (int g = 0; g < G; ++g) {
                            const float w = wc[static_cast<std::size_t>(g) * wstride + static_cast<std::size_t>(ky) * K + kx];
                            acc[g] += v * w;
                            acc2[g] += v2 * w;
                        }
                    }
                }
            }
            for (int blk = 0; blk < (two ? 2 : 1); ++blk) {
                const std::size_t xb = x0 + 8 * static_cast<std::size_t>(blk);
                const std::size_t nu = std::min<std::size_t>(8, Wo - xb);
                for (int g = 0; g < G; ++g) {
                    float tmp[8];
                    std::memcpy(tmp, blk ? &acc2[g] : &acc[g], sizeof tmp);
                    float* dst = out + (static_cast<std::size_t>(co0 + g) * Ho + y) * Wo + xb;
                    for (std::size_t u = 0; u < nu; ++u) dst[u] = tmp[u];
                }
            }
        }
#else
        for (std::size_t x0 = 0; x0 < Wo; x0 += 8) {
            const std::size_t nu = std::min<std::size_t>(8, Wo - x0);
            for (int g = 0; g < G; ++g)
                for (std::size_t u = 0; u < nu; ++u) {
                    float a = p.bias[co0 + g];
                    for (int ci = 0; ci < p.cin; ++ci)
                        for (int ky = 0; ky < K; ++ky)
                            for (int kx = 0; kx < K; ++kx)
                                a += P[static_cast<std::size_t>(ci) * plane + (y + ky) * Wp + x0 + u + kx] *
                                     p.weights[((static_cast<std::size_t>(co0 + g) * p.cin + ci) * K + ky) * K + kx];
                    out[(static_cast<std::size_t>(co0 + g) * Ho + y) * Wo + x0 + u] = a;
                }
        }
#endif
    }
}

}  // namespace detail

// out (cout, Ho, Wo) from in (cin, H, W): Ho, Wo = H / 2, W / 2 pooled (floor), else H, W. Checked by the caller.
inline void pool_conv(const PoolConv& p, const float* in, std::size_t H, std::size_t W, float* out, int threads) {
    const std::size_t Ho = p.pool ? H / 2 : H, Wo = p.pool ? W / 2 : W;
    const std::size_t K = static_cast<std::size_t>(p.K);
    const std::size_t Hp = Ho + K - 1, Wp = Wo + K - 1 + 8;  // + 8: the last 8-pixel step reads past the row
    const std::size_t plane = Hp * Wp;
    auto& s = detail::pool_conv_scratch();
    const std::size_t need = static_cast<std::size_t>(p.cin) * plane;
    if (s.size() < need) s.resize(need);
    float* P = s.data();
    const std::size_t pt = static_cast<std::size_t>(p.pad_top), pl = static_cast<std::size_t>(p.pad_left);
    // A small convolution runs on the calling thread: waking a helper costs about what it would save (measured
    // on the shipped classifier's 4 -> 4 channel layers, 1.8M and 3.7M multiply-adds: 0.05 / 0.10 ms alone,
    // 0.09 / 0.12 with a second thread).
    const double macs = static_cast<double>(Ho) * static_cast<double>(Wo) * p.cout * p.cin * p.K * p.K;
    if (macs < 6e6) threads = 1;
    parallel_for(static_cast<std::size_t>(p.cin), threads, 1, [&](std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; ++c) {
            float* dst = P + c * plane;
            std::fill(dst, dst + plane, 0.0f);
            const float* src = in + c * H * W;
            for (std::size_t y = 0; y < Ho; ++y) {
                float* d = dst + (y + pt) * Wp + pl;
                if (p.pool) {
                    const float* r0 = src + 2 * y * W;
                    const float* r1 = r0 + W;
                    for (std::size_t x = 0; x < Wo; ++x)
                        d[x] = std::max(std::max(r0[2 * x], r0[2 * x + 1]), std::max(r1[2 * x], r1[2 * x + 1]));
                } else {
                    std::copy(src + y * W, src + (y + 1) * W, d);
                }
            }
        }
    });
    parallel_for(Ho, threads, 4, [&](std::size_t b, std::size_t e) {  // one pass over rows, all channel groups
        for (int co = 0; co < p.cout; co += 4) {
            switch (std::min(4, p.cout - co)) {
                case 4: detail::pool_conv_rows<4>(p, co, P, Hp, Wp, Ho, Wo, b, e, out); break;
                case 3: detail::pool_conv_rows<3>(p, co, P, Hp, Wp, Ho, Wo, b, e, out); break;
                case 2: detail::pool_conv_rows<2>(p, co, P, Hp, Wp, Ho, Wo, b, e, out); break;
                default: detail::pool_conv_rows<1>(p, co, P, Hp, Wp, Ho, Wo, b, e, out); break;
            }
        }
    });
}

}  // namespace hyperchroma
