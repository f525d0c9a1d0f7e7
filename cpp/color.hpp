// sRGB (D65, 8-bit) <-> CIE Lab, the color space the table stores (ab) and the output is joined in (L).
//
// lab_to_rgb keeps lightness: a color outside the sRGB gamut has its chroma scaled down (hue and L kept)
// until it fits, instead of clipping channels (which would change L). The 8-bit encode rounds exactly
// (binary search over the 255 decision thresholds in linear light), not through a coarse table.
//
// compose_luma keeps the gray image's luma instead: its output, converted back to gray the way Pillow does
// (Image.convert("L"), ITU-R 601 weights in 16-bit fixed point on the 8-bit sRGB codes), is the input gray
// exactly, for every pixel. compose_luma_pixel states its rules one pixel at a time (and is the path for compilers
// without GCC vector extensions); compose_block (the common case: inside the gamut) and compose_slow (the rest,
// the same rules) run them 8 pixels at a time, without tables or libm in the loop (srgb_pow).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "parallel.hpp"
#include "simd.hpp"

namespace hyperchroma {
namespace color {

constexpr double kXn = 0.95047, kYn = 1.0, kZn = 1.08883;  // D65 white
constexpr double kDelta = 6.0 / 29.0;

inline double srgb_to_linear(double v) { return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4); }
inline double linear_to_srgb(double v) { return v <= 0.0031308 ? v * 12.92 : 1.055 * std::pow(v, 1.0 / 2.4) - 0.055; }
inline double lab_f(double t) {
    return t > kDelta * kDelta * kDelta ? std::cbrt(t) : t / (3 * kDelta * kDelta) + 4.0 / 29.0;
}
inline double lab_finv(double t) { return t > kDelta ? t * t * t : 3 * kDelta * kDelta * (t - 4.0 / 29.0); }

struct Tables {
    std::array<float, 256> to_linear;  // uint8 sRGB -> linear light
    std::array<float, 256> lightness;  // uint8 gray -> L
    std::array<float, 255> encode;     // linear value where the rounded 8-bit code steps from i to i+1
    static constexpr int kBins = 4096;
    std::array<std::uint8_t, kBins + 1> bin_code;  // code of the start of each linear-light bin
    Tables() {
        for (int i = 0; i < 256; ++i) {
            const double lin = srgb_to_linear(i / 255.0);
            to_linear[i] = static_cast<float>(lin);
            lightness[i] = static_cast<float>(116.0 * lab_f(lin) - 16.0);
        }
        for (int i = 0; i < 255; ++i) {
            // srgb value (i + 0.5) / 255 back to linear: values below round to i, at or above to i + 1
            const double s = (i + 0.5) / 255.0;
            encode[i] = static_cast<float>(s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4));
        }
        // Thresholds are at least 3.0e-4 apart (the steepest, linear segment) and a bin is 2.4e-4 wide, so
        // a bin holds at most one threshold: the bin's start code plus one comparison is exact.
        for (int j = 0; j <= kBins; ++j) {
            const float x = static_cast<float>(j) / kBins;
            int c = 0;
            while (c < 255 && encode[c] <= x) ++c;
            bin_code[j] = static_cast<std::uint8_t>(c);
        }
    }
};

inline const Tables& tables() {
    static const Tables t;
    return t;
}

// Linear light -> 8-bit sRGB code, rounded exactly: the number of decision thresholds <= lin.
inline std::uint8_t encode8(const Tables& t, float lin) {
    if (!(lin > 0.0f)) return 0;
    if (lin >= 1.0f) return 255;
    const int code = t.bin_code[static_cast<int>(lin * Tables::kBins)];
    return static_cast<std::uint8_t>(code + (code < 255 && t.encode[code] <= lin));
}

// Lab -> linear RGB (unclipped), float: the fast path for colors inside the gamut.
inline void lab_to_linear_f(float L, float a, float b, float* rgb) {
    constexpr float d = static_cast<float>(kDelta), k = static_cast<float>(3 * kDelta * kDelta), o = 4.0f / 29.0f;
    auto finv = [&](float t) { return t > d ? t * t * t : k * (t - o); };
    const float fy = (L + 16.0f) / 116.0f;
    const float X = static_cast<float>(kXn) * finv(fy + a / 500.0f), Y = finv(fy),
                Z = static_cast<float>(kZn) * finv(fy - b / 200.0f);
    rgb[0] = 3.2404542f * X - 1.5371385f * Y - 0.4985314f * Z;
    rgb[1] = -0.9692660f * X + 1.8760108f * Y + 0.0415560f * Z;
    rgb[2] = 0.0556434f * X - 0.2040259f * Y + 1.0572252f * Z;
}

// Lab -> linear RGB (unclipped).
inline void lab_to_linear(double L, double a, double b, double* rgb) {
    const double fy = (L + 16.0) / 116.0;
    const double X = kXn * lab_finv(fy + a / 500.0), Y = kYn * lab_finv(fy), Z = kZn * lab_finv(fy - b / 200.0);
    rgb[0] = 3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z;
    rgb[1] = -0.9692660 * X + 1.8760108 * Y + 0.0415560 * Z;
    rgb[2] = 0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z;
}

inline bool in_gamut(const double* rgb) {
    constexpr double eps = 1e-4;  // float32 Lab round-off; below the first 8-bit step (1.5e-4)
    return rgb[0] >= -eps && rgb[0] <= 1 + eps && rgb[1] >= -eps && rgb[1] <= 1 + eps && rgb[2] >= -eps &&
           rgb[2] <= 1 + eps;
}

}  // namespace color

// rgb (n,3) uint8 -> L (n,), ab (n,2).
inline void rgb_to_lab(const std::uint8_t* rgb, std::size_t n, float* L, float* ab, int threads = 1) {
    const auto& t = color::tables();
    parallel_for(n, threads, 4096, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) {
            const double r = t.to_linear[rgb[3 * i]], g = t.to_linear[rgb[3 * i + 1]], bl = t.to_linear[rgb[3 * i + 2]];
            const double X = (0.4124564 * r + 0.3575761 * g + 0.1804375 * bl) / color::kXn;
            const double Y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * bl) / color::kYn;
            const double Z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * bl) / color::kZn;
            const double fx = color::lab_f(X), fy = color::lab_f(Y), fz = color::lab_f(Z);
            L[i] = static_cast<float>(116.0 * fy - 16.0);
            ab[2 * i] = static_cast<float>(500.0 * (fx - fy));
            ab[2 * i + 1] = static_cast<float>(200.0 * (fy - fz));
        }
    });
}

// gray (n,) uint8 -> L (n,).
inline void gray_to_lightness(const std::uint8_t* gray, std::size_t n, float* L) {
    const auto& t = color::tables();
    for (std::size_t i = 0; i < n; ++i) L[i] = t.lightness[gray[i]];
}

namespace color {
inline double lightness_to_gray_exact(double L) {
    const double Lc = std::min(100.0, std::max(0.0, L));
    return std::min(1.0, std::max(0.0, linear_to_srgb(lab_finv((Lc + 16.0) / 116.0))));
}
// A smooth curve: a 4097-point table with linear interpolation is within 1e-6 of the exact value.
struct GrayCurve {
    static constexpr int kSteps = 4096;
    std::array<float, kSteps + 2> v;
    GrayCurve() {
        for (int i = 0; i <= kSteps; ++i) v[i] = static_cast<float>(lightness_to_gray_exact(100.0 * i / kSteps));
        v[kSteps + 1] = v[kSteps];
    }
};
inline const GrayCurve& gray_curve() {
    static const GrayCurve c;
    return c;
}
}  // namespace color

// L (n,) -> gray intensity in [0,1] (the sRGB value of the neutral color with that lightness).
inline void lightness_to_gray(const float* L, std::size_t n, float* gray) {
    const auto& c = color::gray_curve();
    constexpr float scale = color::GrayCurve::kSteps / 100.0f;
    for (std::size_t i = 0; i < n; ++i) {
        const float x = std::min(100.0f, std::max(0.0f, L[i])) * scale;  // NaN -> 0
        const int j = static_cast<int>(x);
        const float f = x - static_cast<float>(j);
        gray[i] = c.v[j] + (c.v[j + 1] - c.v[j]) * f;
    }
}

// L (n,) and ab -> rgb (n,3) uint8. ab is interleaved (n,2), or planar (2,n) when `planar`.
// Out-of-gamut colors keep L and hue; their chroma is scaled down by bisection until they fit.
inline void lab_to_rgb(const float* L, const float* ab, std::size_t n, bool planar, std::uint8_t* rgb,
                       int threads = 1) {
    const auto& t = color::tables();
    parallel_for(n, threads, 4096, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) {
            const float Lf = std::min(100.0f, std::max(0.0f, L[i]));  // NaN -> 0
            float af = planar ? ab[i] : ab[2 * i];
            float bf = planar ? ab[n + i] : ab[2 * i + 1];
            if (!std::isfinite(af) || !std::isfinite(bf)) af = bf = 0.0f;
            float fl[3];
            color::lab_to_linear_f(Lf, af, bf, fl);
            constexpr float eps = 1e-4f;
            if (fl[0] >= -eps && fl[0] <= 1 + eps && fl[1] >= -eps && fl[1] <= 1 + eps && fl[2] >= -eps &&
                fl[2] <= 1 + eps) {
                for (int c = 0; c < 3; ++c) rgb[3 * i + c] = color::encode8(t, fl[c]);
                continue;
            }
            const double Li = Lf, a = af, bb = bf;
            double lin[3];
            {
                double lo = 0.0, hi = 1.0;  // s = lo is always in gamut (s = 0 is neutral gray)
                for (int it = 0; it < 12; ++it) {
                    const double mid = 0.5 * (lo + hi);
                    color::lab_to_linear(Li, a * mid, bb * mid, lin);
                    (color::in_gamut(lin) ? lo : hi) = mid;
                }
                color::lab_to_linear(Li, a * lo, bb * lo, lin);
            }
            for (int c = 0; c < 3; ++c) rgb[3 * i + c] = color::encode8(t, static_cast<float>(lin[c]));
        }
    });
}

namespace color {
// Pillow's RGB -> L: ITU-R 601 luma (0.299, 0.587, 0.114) as 16-bit fixed point, rounded, on the 8-bit codes
// (Convert.c, L24). Checked equal to Image.convert("L") on all 2^24 colors (tests/test_color.py samples it).
constexpr int kLumaR = 19595, kLumaG = 38470, kLumaB = 7471;  // sum 65536: a neutral keeps its code
inline int luma601(int r, int g, int b) { return (kLumaR * r + kLumaG * g + kLumaB * b + 32768) >> 16; }

// linear_to_srgb on [0,1] as a table over sqrt(linear) with linear interpolation: within 1e-7 of the exact
// curve (the second derivative in sqrt(v) is at most ~4 where the power segment starts), without a pow.
// slope: d srgb / d linear at the same points (for Newton steps; only their speed depends on it).
struct EncodeCurve {
    static constexpr int kSteps = 4096;
    std::array<float, kSteps + 2> v, slope;
    EncodeCurve() {
        for (int i = 0; i <= kSteps; ++i) {
            const double u = static_cast<double>(i) / kSteps, lin = u * u;
            v[i] = static_cast<float>(linear_to_srgb(lin));
            slope[i] = static_cast<float>(lin <= 0.0031308 ? 12.92 : 1.055 / 2.4 * std::pow(lin, 1.0 / 2.4 - 1.0));
        }
        v[kSteps + 1] = v[kSteps];
        slope[kSteps + 1] = slope[kSteps];
    }
};
inline const EncodeCurve& encode_curve() {
    static const EncodeCurve c;
    return c;
}

// Linear light -> sRGB in [0,1] units, extended outside [0,1] (the linear segment below 0, the power curve
// above 1), so that an out-of-gamut color still has a luma.
inline float linear_to_srgb_ext(float v) {
    if (!(v > 0.0f)) return 12.92f * v;
    if (v >= 1.0f) return 1.055f * std::pow(v, 1.0f / 2.4f) - 0.055f;
    const auto& c = encode_curve();
    const float x = std::sqrt(v) * EncodeCurve::kSteps;
    const int j = static_cast<int>(x);
    return c.v[j] + (c.v[j + 1] - c.v[j]) * (x - static_cast<float>(j));
}

// 601 luma, in 8-bit units (unrounded), of the Lab color (L, a, b) encoded with linear_to_srgb_ext; lin gets
// its linear RGB.
inline float lab_luma(float L, float a, float b, float* lin) {
    lab_to_linear_f(L, a, b, lin);
    constexpr float wr = kLumaR / 65536.0f, wg = kLumaG / 65536.0f, wb = kLumaB / 65536.0f;
    return 255.0f * (wr * linear_to_srgb_ext(lin[0]) + wg * linear_to_srgb_ext(lin[1]) +
                     wb * linear_to_srgb_ext(lin[2]));
}

// lab_luma and its derivative in L (for Newton steps): d luma / dL = sum_c w_c * srgb'(lin_c) * d lin_c / dL.
inline float lab_luma_d(float L, float a, float b, float* lin, float* dluma) {
    constexpr float d = static_cast<float>(kDelta), k = static_cast<float>(3 * kDelta * kDelta), o = 4.0f / 29.0f;
    const float fy = (L + 16.0f) / 116.0f, fx = fy + a / 500.0f, fz = fy - b / 200.0f;
    auto finv = [&](float t) { return t > d ? t * t * t : k * (t - o); };
    auto dfinv = [&](float t) { return (t > d ? 3.0f * t * t : k) / 116.0f; };  // d finv(t(L)) / dL
    const float X = static_cast<float>(kXn) * finv(fx), Y = finv(fy), Z = static_cast<float>(kZn) * finv(fz);
    const float dX = static_cast<float>(kXn) * dfinv(fx), dY = dfinv(fy), dZ = static_cast<float>(kZn) * dfinv(fz);
    static constexpr float M[3][3] = {{3.2404542f, -1.5371385f, -0.4985314f},
                                      {-0.9692660f, 1.8760108f, 0.0415560f},
                                      {0.0556434f, -0.2040259f, 1.0572252f}};
    constexpr float w[3] = {kLumaR / 65536.0f, kLumaG / 65536.0f, kLumaB / 65536.0f};
    float luma = 0.0f, dl = 0.0f;
    for (int c = 0; c < 3; ++c) {
        lin[c] = M[c][0] * X + M[c][1] * Y + M[c][2] * Z;
        const float dlin = M[c][0] * dX + M[c][1] * dY + M[c][2] * dZ;
        const float v = lin[c], e = linear_to_srgb_ext(v);
        // srgb'(v): 12.92 on the linear segment, 1.055/2.4 * v^(1/2.4 - 1) = (e + 0.055) / (2.4 v) above it
        const float de = v <= 0.0031308f ? 12.92f : (e + 0.055f) / (2.4f * v);
        luma += w[c] * e;
        dl += w[c] * de * dlin;
    }
    *dluma = 255.0f * dl;
    return 255.0f * luma;
}

// The lightness L' in [0,100] at which (L', a, b) has 601 luma y (to 1e-3 levels where one exists), by Newton
// steps from L0 (luma grows with L' at fixed a, b; a step that would leave [0,100] stops there).
// lin gets the linear RGB at the returned L'.
inline float solve_lightness(float y, float a, float b, float L0, float* lin) {
    constexpr float tol = 1e-3f;
    float L = L0, dl;
    for (int it = 0; it < 10; ++it) {
        const float h = lab_luma_d(L, a, b, lin, &dl) - y;
        if (std::fabs(h) < tol) return L;
        if (!(dl > 1e-3f)) dl = 1e-3f;  // flat or inverted (far outside the gamut): a damped step
        const float Ln = std::min(100.0f, std::max(0.0f, L - h / dl));
        if (Ln == L) return L;  // pinned at 0 or 100: no root inside
        L = Ln;
    }
    lab_to_linear_f(L, a, b, lin);
    return L;
}

// How far linear RGB is outside the gamut (> 0 outside, <= 0 inside: minus the margin to the nearest face),
// with lab_to_rgb's tolerance of 1e-4 for float32 Lab round-off.
inline float gamut_excess(const float* lin) {
    constexpr float eps = 1e-4f;
    float e = -1.0f;
    for (int c = 0; c < 3; ++c) {
        if (std::isnan(lin[c])) return std::numeric_limits<float>::infinity();  // overflowed Lab: outside
        e = std::max(e, std::max(-eps - lin[c], lin[c] - (1.0f + eps)));
    }
    return e;
}
inline bool in_gamut_f(const float* lin) { return gamut_excess(lin) <= 0.0f; }

// Any real luma within kBand of y rounds back to y (up to finish_pixel's +-1 fix). 63/128: exact in float and
// double, so the reference in the tests bisects on the same points.
constexpr float kBand = 0.4921875f;

inline void finish_pixel(int y, float* target, std::uint8_t* rgb);

// One pixel of compose_luma: target luma y (0..255), hue from (a, b) -> rgb with luma601(rgb) == y.
// L0: where the lightness solve starts (L(y), or a better guess).
inline void compose_luma_pixel(const Tables& t, int y, float a, float b, float L0, std::uint8_t* rgb) {
    if (!std::isfinite(a) || !std::isfinite(b) || (a == 0.0f && b == 0.0f) || y == 0 || y == 255) {
        // (luma 0 and 255 leave room for a few codes of chroma at most: black and white)
        rgb[0] = rgb[1] = rgb[2] = static_cast<std::uint8_t>(y);
        return;
    }
    const float yf = static_cast<float>(y);
    // The Lab color with the requested a, b whose luma is y: move its lightness, not its chroma. Any real luma
    // within kBand of y rounds back to y (up to the +-1 fix below), so a color that only fits a little lighter
    // or darker (a gamut edge, e.g. a channel at 0 or 255) keeps its full chroma.
    float lin[3];
    float L = solve_lightness(yf, a, b, L0, lin);
    const float excess = gamut_excess(lin);
    if (excess > 0.0f) {
        // Moving the luma by 0.49 levels moves the linear channels by about 0.0045 at most (at white): try the
        // band only when that close.
        bool fits = false;
        if (excess < 0.01f) {
            float lin2[3];
            for (const float side : {-kBand, kBand}) {
                float Ls = solve_lightness(yf + side, a, b, L, lin2);
                if (!in_gamut_f(lin2)) continue;
                // the luma offset in [0, side] closest to 0 that fits, by bisection (8 steps: 0.002 levels); each
                // solve starts from the interpolation between the bracket's lightnesses (mostly one evaluation)
                float in = side, out = 0.0f, Lout = L;
                for (int it = 0; it < 8; ++it) {
                    const float mid = 0.5f * (in + out);
                    const float Lm = solve_lightness(yf + mid, a, b, 0.5f * (Ls + Lout), lin);
                    if (in_gamut_f(lin)) in = mid, Ls = Lm;
                    else out = mid, Lout = Lm;
                }
                lab_to_linear_f(Ls, a, b, lin);
                fits = true;
                break;
            }
        }
        if (!fits) {
            // Outside the gamut at that luma: reduce the chroma (same hue) by a scale k in [0,1] found by
            // bisection, with the lightness re-solved for each k; k = 0 is the neutral gray y, always inside.
            // (Which k fit need not be an interval: the lightness moves with k. Bisection, 14 steps, like
            // lab_to_rgb's, lands on an edge of a fitting range; the reference in the tests follows it.)
            // Each solve starts from the lightness interpolated between the bracket's (quadratically, through
            // the last other point solved too, once there is one: L(k) is smooth, about quadratic in k).
            float klo = 0.0f, khi = 1.0f, Llo = t.lightness[y], Lhi = L, kx = -1.0f, Lx = 0.0f;
            for (int it = 0; it < 14; ++it) {
                const float k = 0.5f * (klo + khi);
                float Lp = 0.5f * (Llo + Lhi);
                if (kx >= 0.0f) {  // Newton form through (klo, Llo), (khi, Lhi), (kx, Lx)
                    const float d1 = (Lhi - Llo) / (khi - klo), d2 = (Lx - Lhi) / (kx - khi);
                    Lp += (d2 - d1) / (kx - klo) * (k - klo) * (k - khi);
                }
                const float Lk = solve_lightness(yf, a * k, b * k, std::min(100.0f, std::max(0.0f, Lp)), lin);
                if (in_gamut_f(lin)) kx = klo, Lx = Llo, klo = k, Llo = Lk;
                else kx = khi, Lx = Lhi, khi = k, Lhi = Lk;
            }
            if (klo > 0.0f) lab_to_linear_f(Llo, a * klo, b * klo, lin);
            else lin[0] = lin[1] = lin[2] = static_cast<float>(t.to_linear[y]);
        }
    }
    float target[3];
    for (int c = 0; c < 3; ++c)
        target[c] = 255.0f * linear_to_srgb_ext(std::min(1.0f, std::max(0.0f, lin[c])));
    finish_pixel(y, target, rgb);
}

// The 8-bit code for a target color (8-bit units, inside the cube) near luma y: its luma brought into
// y +- kBand, rounded, and corrected so that luma601 is exactly y.
inline void finish_pixel(int y, float* target, std::uint8_t* rgb) {
    const float yf = static_cast<float>(y);
    // Bring the luma into y +- kBand along the gray axis (the solver's residual, or the clamp above), then fit
    // the chroma vector d around it into [0,255] (only needed where the lightness solve did not converge).
    constexpr float wr = kLumaR / 65536.0f, wg = kLumaG / 65536.0f, wb = kLumaB / 65536.0f;
    const float y0 = wr * target[0] + wg * target[1] + wb * target[2];
    const float center = std::min(yf + kBand, std::max(yf - kBand, y0));
    const float d[3] = {target[0] - y0, target[1] - y0, target[2] - y0};
    float s = 1.0f;
    for (int c = 0; c < 3; ++c) {
        if (d[c] > 0.0f) s = std::min(s, (255.0f - center) / d[c]);
        else if (d[c] < 0.0f) s = std::min(s, center / -d[c]);
    }
    s = std::max(s, 0.0f);
    int q[3];
    for (int c = 0; c < 3; ++c) {
        target[c] = std::min(255.0f, std::max(0.0f, center + s * d[c]));
        q[c] = static_cast<int>(target[c] + 0.5f);  // target >= 0: round half up
    }
    if (luma601(q[0], q[1], q[2]) != y) {
        // Rounding moved the luma by a level: take the nearest code (squared error to the target) within +-1
        // per channel whose luma is y. One exists unless the clamps at 0/255 bind; then neutral y.
        float best = -1.0f;
        int bq[3] = {y, y, y};
        for (int dr = -1; dr <= 1; ++dr)
            for (int dg = -1; dg <= 1; ++dg)
                for (int db = -1; db <= 1; ++db) {
                    const int r = q[0] + dr, g = q[1] + dg, bl = q[2] + db;
                    if (r < 0 || r > 255 || g < 0 || g > 255 || bl < 0 || bl > 255 || luma601(r, g, bl) != y)
                        continue;
                    const float er = r - target[0], eg = g - target[1], eb = bl - target[2];
                    const float e = er * er + eg * eg + eb * eb;
                    if (best < 0.0f || e < best) {
                        best = e;
                        bq[0] = r, bq[1] = g, bq[2] = bl;
                    }
                }
        q[0] = bq[0], q[1] = bq[1], q[2] = bq[2];
    }
    for (int c = 0; c < 3; ++c) rgb[c] = static_cast<std::uint8_t>(q[c]);
}

// The lightness offset at which (L, a, b) has the luma of gray y, to second order in (a, b): Taylor coefficients of
// F(L, a, b) = 601 luma of (L, a, b) (8-bit units, float64, central differences) around (L(y), 0, 0), per y.
// compose_block starts its Newton step there instead of at L(y): one step fewer for the usual chroma.
struct LumaTaylor {
    struct Coef {
        float fa, fb, faa, fab, fbb, fl, fla, flb;  // F_a, F_b, F_aa/2, F_ab, F_bb/2, F_L, F_La, F_Lb (F_LL/2: fll)
    };
    std::array<Coef, 256> c;
    std::array<float, 256> fll;
    static double luma(double L, double a, double b) {
        double lin[3];
        lab_to_linear(L, a, b, lin);
        double e[3];
        for (int k = 0; k < 3; ++k) e[k] = linear_to_srgb(lin[k]);
        return 255.0 * (kLumaR * e[0] + kLumaG * e[1] + kLumaB * e[2]) / 65536.0;
    }
    LumaTaylor() {
        const auto& t = tables();
        for (int y = 0; y < 256; ++y) {
            const double L = t.lightness[y], h = 0.05, hl = 0.05;
            auto F = [&](double dl, double a, double b) { return luma(L + dl, a, b); };
            const double f0 = F(0, 0, 0);
            Coef& k = c[y];
            k.fa = static_cast<float>((F(0, h, 0) - F(0, -h, 0)) / (2 * h));
            k.fb = static_cast<float>((F(0, 0, h) - F(0, 0, -h)) / (2 * h));
            k.fl = static_cast<float>((F(hl, 0, 0) - F(-hl, 0, 0)) / (2 * hl));
            k.faa = static_cast<float>((F(0, h, 0) - 2 * f0 + F(0, -h, 0)) / (2 * h * h));
            k.fbb = static_cast<float>((F(0, 0, h) - 2 * f0 + F(0, 0, -h)) / (2 * h * h));
            k.fab = static_cast<float>((F(0, h, h) - F(0, h, -h) - F(0, -h, h) + F(0, -h, -h)) / (4 * h * h));
            k.fla = static_cast<float>((F(hl, h, 0) - F(hl, -h, 0) - F(-hl, h, 0) + F(-hl, -h, 0)) / (4 * h * hl));
            k.flb = static_cast<float>((F(hl, 0, h) - F(hl, 0, -h) - F(-hl, 0, h) + F(-hl, 0, -h)) / (4 * h * hl));
            fll[y] = static_cast<float>((F(hl, 0, 0) - 2 * f0 + F(-hl, 0, 0)) / (2 * hl * hl));
            if (!(k.fl > 0.01f)) k = Coef{0, 0, 0, 0, 0, 1, 0, 0}, fll[y] = 0;  // y = 0, 255: not used
        }
    }
};
inline const LumaTaylor& luma_taylor() {
    static const LumaTaylor t;
    return t;
}

// compose_luma's common case, kBlock pixels at once: from LumaTaylor's start, one Newton step for the lightness
// (more, up to two, for the lanes that need them), then a check. Lanes that converged inside the gamut get their
// target color (8-bit units, planar: r, g, b blocks of kBlock) and its rounding q (interleaved); state 2 when q's
// Pillow luma is y (done), 1 when it needs finish_pixel's +-1 fix; state 0 (outside the gamut, not converged,
// zero or non-finite ab, y = 0 or 255): compose_slow. Lout gets the lightness reached (compose_slow's start).
// Every lane is computed on its own, 8 at a time with GCC vector extensions (SSE pairs, AVX2 or AVX-512 per
// clone), without branches or tables.
constexpr int kBlock = 64;
// GCC vector extensions (vector_size, ?: on vectors, __builtin_convertvector): GCC, and Clang 15 and later;
// other compilers (or -DHYPERCHROMA_NO_COLOR_VECTORS) get the per-pixel compose_luma_pixel only (the same
// results up to float rounding, slower).
#if ((defined(__GNUC__) && !defined(__clang__)) || (defined(__clang__) && __clang_major__ >= 15)) && \
    !defined(HYPERCHROMA_NO_COLOR_VECTORS)
#define HYPERCHROMA_COLOR_VECTORS 1
// (vector values cross no function boundary inside a HYPERCHROMA_CLONES function: helpers and lambdas are
// always inlined, since an out-of-line one is compiled once, for the baseline ABI, and called from every clone)
#define CL_ALWAYS_INLINE __attribute__((always_inline))
// (vectors by value only between always-inlined functions: GCC's note that their ABI differs between clones does
// not apply; it comes at the end of the translation unit, so it stays off from here on)
#pragma GCC diagnostic ignored "-Wpsabi"
namespace vec {
typedef float vf __attribute__((vector_size(32)));
typedef std::int32_t vi __attribute__((vector_size(32)));
constexpr int kLanes = 8;
CL_ALWAYS_INLINE inline vi bits(vf x) {
    vi r;
    std::memcpy(&r, &x, sizeof r);
    return r;
}
CL_ALWAYS_INLINE inline vf from_bits(vi x) {
    vf r;
    std::memcpy(&r, &x, sizeof r);
    return r;
}
// 1.055 v^(1/2.4) - 0.055 for v in [0.0031308, 1] (the power segment of linear -> sRGB), as exp2(log2(v) / 2.4)
// with polynomials (Chebyshev fits: log2(1+x)/x to 3.5e-8 on [sqrt(1/2), sqrt(2)) - 1, 2^f to 6e-9 on
// [-1/2, 1/2]): within 1.3e-7 of the exact curve in float32, no table, no libm call.
CL_ALWAYS_INLINE inline vf srgb_pow(vf v) {
    const vi e = (bits(v) - 0x3f3504f3) >> 23;  // v = 2^e m, m in [sqrt(1/2), sqrt(2))
    const vf x = from_bits(bits(v) - (e << 23)) - 1.0f;
    // (the fits' coefficients with the 1 / 2.4 of the power folded into the first, the 1.055 into the second)
    vf p = x * 5.189235254e-02f - 8.533724413e-02f;
    p = p * x + 8.962010533e-02f;
    p = p * x - 9.968553117e-02f;
    p = p * x + 1.200021205e-01f;
    p = p * x - 1.502888843e-01f;
    p = p * x + 2.003783087e-01f;
    p = p * x - 3.005614332e-01f;
    p = p * x + 6.011229229e-01f;
    const vf z = __builtin_convertvector(e, vf) * (1.0f / 2.4f) + x * p;  // log2 of the power, in [-3.5, 0]
    const vf t = z + 12582912.0f;                                        // 1.5 * 2^23: round to an integer
    const vi n = bits(t) - 0x4b400000;
    const vf f = z - (t - 12582912.0f);
    vf q = f * 1.631591053e-04f + 1.413202605e-03f;
    q = q * f + 1.014703213e-02f;
    q = q * f + 5.855609405e-02f;
    q = q * f + 2.534389691e-01f;
    q = q * f + 7.312702961e-01f;
    q = q * f + 1.055f;
    return from_bits(bits(q) + (n << 23)) - 0.055f;
}

// The float constants of the Lab <-> XYZ <-> luma conversions the vector kernels share.
namespace lab {
constexpr float d = static_cast<float>(kDelta), k3 = static_cast<float>(3 * kDelta * kDelta), o = 4.0f / 29.0f;
constexpr float xn = static_cast<float>(kXn), zn = static_cast<float>(kZn);
constexpr float w0 = kLumaR / 65536.0f, w1 = kLumaG / 65536.0f, w2 = kLumaB / 65536.0f;
constexpr float i116 = 1.0f / 116.0f;  // (constant reciprocals: the compiler may not turn x / 116 into one)
}  // namespace lab
}  // namespace vec
HYPERCHROMA_CLONES inline void compose_block(const float* __restrict lightness,
                                             const std::uint8_t* __restrict gray, const float* __restrict a,
                                             const float* __restrict b, float* __restrict target,
                                             float* __restrict Lout,
                                             std::uint8_t* __restrict q, std::uint8_t* __restrict state) {
    using vec::vf;
    using vec::vi;
    constexpr int W = vec::kLanes;
    using namespace vec::lab;
    const vf zero = vf{} + 0.0f, one = zero + 1.0f;
    const LumaTaylor& tay = luma_taylor();
    auto vmax = [](vf x, vf lo) CL_ALWAYS_INLINE { return lo < x ? x : lo; };  // NaN -> lo
    auto vmin = [](vf x, vf hi) CL_ALWAYS_INLINE { return x < hi ? x : hi; };  // NaN -> hi
    auto sel = [](vi m, vf x, vf y) CL_ALWAYS_INLINE { return m ? x : y; };
    // linear -> sRGB [0,1] for v in [0,1] (clamped; lanes outside are rejected by the final check); vc: clamped v
    auto encode = [&](vf v, vf& vc) CL_ALWAYS_INLINE {
        vc = vmin(vmax(v, zero), one);
        return sel(vc > 0.0031308f, vec::srgb_pow(vmax(vc, zero + 0.0031308f)), vc * 12.92f);
    };
    // its slope (for the Newton steps only: their speed depends on it, not the result)
    auto slope = [&](vf e, vf vc) CL_ALWAYS_INLINE {
        const vf pw = (e + 0.055f) / (2.4f * vmax(vc, zero + 0.0031308f));
        return sel(vc > 0.0031308f, pw, zero + 12.92f);
    };
    auto cube = [&](vf t) CL_ALWAYS_INLINE { return sel(t > d, t * t * t, k3 * (t - o)); };
    // d cube(t(L)) / dL
    auto dcube = [&](vf t) CL_ALWAYS_INLINE { return sel(t > d, (3.0f * i116) * t * t, zero + k3 * i116); };
    for (int i0 = 0; i0 < kBlock; i0 += W) {
        vf y, L, av, bv;
        vi g;
        for (int k = 0; k < W; ++k) {
            g[k] = gray[i0 + k];
            y[k] = static_cast<float>(gray[i0 + k]);
            L[k] = lightness[gray[i0 + k]];
        }
        std::memcpy(&av, a + i0, sizeof av);
        std::memcpy(&bv, b + i0, sizeof bv);
        const vf fa = av * (1.0f / 500.0f), fb = bv * (1.0f / 200.0f);
        vf r, gr, bl, er, eg, eb, vr, vg, vb;
        auto eval = [&](vf Lx) CL_ALWAYS_INLINE {  // luma - y at Lx; sets the linear and encoded channels
            const vf fy = (Lx + 16.0f) * i116, fx = fy + fa, fz = fy - fb;
            const vf X = xn * cube(fx), Y = cube(fy), Z = zn * cube(fz);
            r = 3.2404542f * X - 1.5371385f * Y - 0.4985314f * Z;
            gr = -0.9692660f * X + 1.8760108f * Y + 0.0415560f * Z;
            bl = 0.0556434f * X - 0.2040259f * Y + 1.0572252f * Z;
            er = encode(r, vr), eg = encode(gr, vg), eb = encode(bl, vb);
            return 255.0f * (w0 * er + w1 * eg + w2 * eb) - y;
        };
        auto newton = [&](vf Lx) CL_ALWAYS_INLINE {
            const vf h = eval(Lx);
            const vf fy = (Lx + 16.0f) * i116, fx = fy + fa, fz = fy - fb;
            const vf dX = xn * dcube(fx), dY = dcube(fy), dZ = zn * dcube(fz);
            const vf dr = 3.2404542f * dX - 1.5371385f * dY - 0.4985314f * dZ;
            const vf dg = -0.9692660f * dX + 1.8760108f * dY + 0.0415560f * dZ;
            const vf db = 0.0556434f * dX - 0.2040259f * dY + 1.0572252f * dZ;
            const vf dl = vmax(255.0f * (w0 * slope(er, vr) * dr + w1 * slope(eg, vg) * dg + w2 * slope(eb, vb) * db),
                               zero + 1e-3f);
            return vmin(vmax(Lx - h / dl, zero), zero + 100.0f);
        };
        {  // second-order start (see LumaTaylor)
            vf fa_, fb_, faa, fab, fbb, fl, fla, flb, fll;
            for (int k = 0; k < W; ++k) {
                const LumaTaylor::Coef& c = tay.c[gray[i0 + k]];
                fa_[k] = c.fa, fb_[k] = c.fb, faa[k] = c.faa, fab[k] = c.fab, fbb[k] = c.fbb, fl[k] = c.fl;
                fla[k] = c.fla, flb[k] = c.flb, fll[k] = tay.fll[gray[i0 + k]];
            }
            const vf s0 = fa_ * av + fb_ * bv + faa * av * av + fab * av * bv + fbb * bv * bv;
            const vf dl1 = -s0 / fl;
            const vf dl2 = -s0 / (fl + fla * av + flb * bv + fll * dl1);
            L = vmin(vmax(L + dl2, zero), zero + 100.0f);
        }
        auto vabs = [](vf x) CL_ALWAYS_INLINE { return vec::from_bits(vec::bits(x) & 0x7fffffff); };
        L = newton(L);
        vf h = eval(L);
        // lanes not converged yet (a far start: high chroma, dark or light): more steps, while any lane of the 8
        // needs one (lanes that converged keep their L)
        for (int extra = 0; extra < 2; ++extra) {
            constexpr float m = 0.02f;  // (lanes well outside the gamut go to the slow path anyway)
            const vi redo = (vabs(h) >= 1e-3f) & (r >= -m) & (r <= 1 + m) & (gr >= -m) & (gr <= 1 + m) & (bl >= -m) &
                            (bl <= 1 + m) & (g != 0) & (g != 255);
            int any = 0;
            for (int k = 0; k < W; ++k) any |= redo[k];
            if (!any) break;
            L = sel(redo, newton(L), L);
            h = eval(L);
        }
        constexpr float eps = 1e-4f;
        const vi good = (vabs(h) < 1e-3f) & (r >= -eps) & (r <= 1 + eps) & (gr >= -eps) & (gr <= 1 + eps) &
                        (bl >= -eps) & (bl <= 1 + eps) & (g != 0) & (g != 255) & ((av != 0.0f) | (bv != 0.0f)) &
                        (vabs(av) < 1e30f) & (vabs(bv) < 1e30f);
        // converged: the luma is within 1e-3 of y, so finish_pixel's shift along the gray axis and its fit into
        // the cube are no-ops; round half up (the target is >= 0)
        const vf tr = 255.0f * er, tg = 255.0f * eg, tb = 255.0f * eb;
        const vi qr = __builtin_convertvector(tr + 0.5f, vi), qg = __builtin_convertvector(tg + 0.5f, vi),
                 qb = __builtin_convertvector(tb + 0.5f, vi);
        const vi luma = (kLumaR * qr + kLumaG * qg + kLumaB * qb + 32768) >> 16;
        const vi st = good & ((luma == g) ? vi{} + 2 : vi{} + 1);
        std::memcpy(target + i0, &tr, sizeof tr);
        std::memcpy(Lout + i0, &L, sizeof L);
        std::memcpy(target + kBlock + i0, &tg, sizeof tg);
        std::memcpy(target + 2 * kBlock + i0, &tb, sizeof tb);
        for (int k = 0; k < W; ++k) {
            q[3 * (i0 + k)] = static_cast<std::uint8_t>(qr[k]);
            q[3 * (i0 + k) + 1] = static_cast<std::uint8_t>(qg[k]);
            q[3 * (i0 + k) + 2] = static_cast<std::uint8_t>(qb[k]);
            state[i0 + k] = static_cast<std::uint8_t>(st[k]);
        }
    }
}

// compose_luma_pixel for vec::kLanes pixels at once (the pixels compose_block could not finish: outside the gamut
// or not converged; not the trivial ones, which compose_luma_pixel answers at its top): the same rules, the
// lightness solves, the band and the chroma bisection run on all lanes, each lane masked once it is done, so a
// lane's result does not depend on the others. target gets each lane's color (8-bit units, planar by lane
// blocks of kLanes) for finish_pixel.
HYPERCHROMA_CLONES inline void compose_slow(const float* __restrict lightness, const float* __restrict to_linear,
                                            const std::uint8_t* __restrict gray, const float* __restrict a,
                                            const float* __restrict b, const float* __restrict L0,
                                            float* __restrict target) {
    using vec::vf;
    using vec::vi;
    constexpr int W = vec::kLanes;
    using namespace vec::lab;
    constexpr float eps = 1e-4f;
    const vf zero = vf{} + 0.0f, one = zero + 1.0f;
    const vi all = vi{} - 1;
    auto vmax = [](vf x, vf lo) CL_ALWAYS_INLINE { return lo < x ? x : lo; };  // NaN -> lo
    auto vmin = [](vf x, vf hi) CL_ALWAYS_INLINE { return x < hi ? x : hi; };  // NaN -> hi
    auto sel = [](vi m, vf x, vf y) CL_ALWAYS_INLINE { return m ? x : y; };
    auto vabs = [](vf x) CL_ALWAYS_INLINE { return vec::from_bits(vec::bits(x) & 0x7fffffff); };
    auto any = [](vi m) CL_ALWAYS_INLINE {
        int r = 0;
        for (int k = 0; k < W; ++k) r |= m[k];
        return r != 0;
    };
    auto cube = [&](vf t) CL_ALWAYS_INLINE { return sel(t > d, t * t * t, k3 * (t - o)); };
    auto dcube = [&](vf t) CL_ALWAYS_INLINE { return sel(t > d, (3.0f * i116) * t * t, zero + k3 * i116); };
    // linear -> sRGB, extended (linear_to_srgb_ext), and its slope
    auto encode_ext = [&](vf v, vf& slope) CL_ALWAYS_INLINE {
        const vf vt = vmax(v, zero + 0.0031308f);
        const vf p = vec::srgb_pow(vt);
        const vi pw = v > 0.0031308f;
        slope = sel(pw, (p + 0.055f) / (2.4f * vt), zero + 12.92f);
        return sel(pw, p, 12.92f * v);
    };
    vf r, gr, bl;  // linear RGB of the last lab_lin / eval
    auto lab_lin = [&](vf L, vf A, vf Bv) CL_ALWAYS_INLINE {
        const vf fy = (L + 16.0f) * i116, fx = fy + A * (1.0f / 500.0f), fz = fy - Bv * (1.0f / 200.0f);
        const vf X = xn * cube(fx), Y = cube(fy), Z = zn * cube(fz);
        r = 3.2404542f * X - 1.5371385f * Y - 0.4985314f * Z;
        gr = -0.9692660f * X + 1.8760108f * Y + 0.0415560f * Z;
        bl = 0.0556434f * X - 0.2040259f * Y + 1.0572252f * Z;
    };
    auto fits = [&]() CL_ALWAYS_INLINE {
        return (r >= -eps) & (r <= 1 + eps) & (gr >= -eps) & (gr <= 1 + eps) & (bl >= -eps) & (bl <= 1 + eps);
    };
    // solve_lightness on the lanes of `active` (the others are left alone): lightness with luma yt, from Ls
    auto solve = [&](vf yt, vf A, vf Bv, vf Ls, vi active) CL_ALWAYS_INLINE {
        vf L = Ls;
        vi done = ~active;
        for (int it = 0; it < 10; ++it) {
            lab_lin(L, A, Bv);
            const vf fy = (L + 16.0f) * i116, fx = fy + A * (1.0f / 500.0f), fz = fy - Bv * (1.0f / 200.0f);
            const vf dX = xn * dcube(fx), dY = dcube(fy), dZ = zn * dcube(fz);
            const vf dr = 3.2404542f * dX - 1.5371385f * dY - 0.4985314f * dZ;
            const vf dg = -0.9692660f * dX + 1.8760108f * dY + 0.0415560f * dZ;
            const vf db = 0.0556434f * dX - 0.2040259f * dY + 1.0572252f * dZ;
            vf sr, sg, sb;
            const vf er = encode_ext(r, sr), eg = encode_ext(gr, sg), eb = encode_ext(bl, sb);
            const vf h = 255.0f * (w0 * er + w1 * eg + w2 * eb) - yt;
            vf dl = 255.0f * (w0 * sr * dr + w1 * sg * dg + w2 * sb * db);
            // converged (within 1e-3 levels): one more step, without checking it (a good start often converges
            // at once, and the bisections' gamut decisions want the root closer than that)
            const vi conv = ~done & (vabs(h) < 1e-3f);
            dl = sel(dl > 1e-3f, dl, zero + 1e-3f);  // flat or inverted (far outside the gamut): a damped step
            const vf Ln = vmin(vmax(L - h / dl, zero), zero + 100.0f);
            const vi pinned = Ln == L;  // pinned at 0 or 100: no root inside
            L = sel(done | (pinned & ~conv), L, Ln);
            done |= conv | pinned;
            if (!any(~done)) break;
        }
        lab_lin(L, A, Bv);
        return L;
    };
    vf y, av, bv, Ly, neutral;
    for (int k = 0; k < W; ++k) {
        y[k] = static_cast<float>(gray[k]);
        Ly[k] = lightness[gray[k]];
        neutral[k] = to_linear[gray[k]];
    }
    std::memcpy(&av, a, sizeof av);
    std::memcpy(&bv, b, sizeof bv);
    vf Lstart;
    std::memcpy(&Lstart, L0, sizeof Lstart);
    const vf L = solve(y, av, bv, Lstart, all);
    vf fr = r, fg = gr, fb = bl;  // the final linear color of each lane
    vi fitted = fits();
    constexpr float nm = 0.01f;  // gamut_excess < 0.01: try the band
    const vi near = ~fitted & (r > -eps - nm) & (r < 1 + eps + nm) & (gr > -eps - nm) & (gr < 1 + eps + nm) &
                    (bl > -eps - nm) & (bl < 1 + eps + nm);
    for (const float side : {-kBand, kBand}) {
        const vi m = near & ~fitted;
        if (!any(m)) break;
        vf Ls = solve(y + side, av, bv, L, m);
        const vi ms = m & fits();
        if (!any(ms)) continue;
        vf in = zero + side, out = zero, Lout = L;
        for (int it = 0; it < 8; ++it) {
            const vf mid = 0.5f * (in + out);
            const vf Lm = solve(y + mid, av, bv, 0.5f * (Ls + Lout), ms);
            const vi f = ms & fits(), nf = ms & ~fits();
            in = sel(f, mid, in), Ls = sel(f, Lm, Ls);
            out = sel(nf, mid, out), Lout = sel(nf, Lm, Lout);
        }
        lab_lin(Ls, av, bv);
        fr = sel(ms, r, fr), fg = sel(ms, gr, fg), fb = sel(ms, bl, fb);
        fitted |= ms;
    }
    const vi todo = ~fitted;
    if (any(todo)) {
        // the chroma scale k by bisection (14 steps), L re-solved for each k from the bracket's interpolation
        vf klo = zero, khi = one, Llo = Ly, Lhi = L, kx = zero - 1.0f, Lx = zero;
        for (int it = 0; it < 14; ++it) {
            const vf k = 0.5f * (klo + khi);
            const vf d1 = (Lhi - Llo) / (khi - klo), d2 = (Lx - Lhi) / (kx - khi);
            const vf Lp = 0.5f * (Llo + Lhi) + sel(kx >= 0.0f, (d2 - d1) / (kx - klo) * (k - klo) * (k - khi), zero);
            const vf Lk = solve(y, av * k, bv * k, vmin(vmax(Lp, zero), zero + 100.0f), todo);
            const vi f = fits();
            kx = sel(f, klo, khi), Lx = sel(f, Llo, Lhi);
            klo = sel(f, k, klo), Llo = sel(f, Lk, Llo);
            khi = sel(f, khi, k), Lhi = sel(f, Lhi, Lk);
        }
        lab_lin(Llo, av * klo, bv * klo);
        const vi pos = todo & (klo > 0.0f), neu = todo & ~(klo > 0.0f);
        fr = sel(pos, r, sel(neu, neutral, fr));
        fg = sel(pos, gr, sel(neu, neutral, fg));
        fb = sel(pos, bl, sel(neu, neutral, fb));
    }
    auto enc8 = [&](vf v) CL_ALWAYS_INLINE {
        const vf vc = vmin(vmax(v, zero), one);
        return 255.0f * sel(vc > 0.0031308f, vec::srgb_pow(vmax(vc, zero + 0.0031308f)), vc * 12.92f);
    };
    const vf tr = enc8(fr), tg = enc8(fg), tb = enc8(fb);
    std::memcpy(target, &tr, sizeof tr);
    std::memcpy(target + W, &tg, sizeof tg);
    std::memcpy(target + 2 * W, &tb, sizeof tb);
}
#endif  // HYPERCHROMA_COLOR_VECTORS
}  // namespace color

// gray (n,) uint8 and ab -> rgb (n,3) uint8 whose Pillow luma (Image.convert("L")) is exactly gray.
// ab is interleaved (n,2), or planar (2,n) when `planar`. Each pixel is the Lab color (L', a, b) with L' solved so
// that its 601 luma is the gray value (not L' = the gray's own lightness: a saturated color is lighter or darker
// than its luma's neutral gray). Where that color is outside sRGB, its chroma is scaled down (hue kept, L'
// re-solved) until it fits. The result is rounded to 8 bits with a +-1 correction so the integer luma lands
// on gray; a color converted to (its luma, its ab) comes back to within rounding. Zero or non-finite ab gives
// R = G = B = gray. Each pixel's result depends on that pixel only (not on the block of color::kBlock or the
// queue of slow pixels it goes through), so not on threads either.
inline void compose_luma(const std::uint8_t* gray, const float* ab, std::size_t n, bool planar, std::uint8_t* rgb,
                         int threads = 1) {
    const auto& t = color::tables();
    constexpr std::size_t B = color::kBlock;
    const std::size_t blocks = (n + B - 1) / B;
#ifndef HYPERCHROMA_COLOR_VECTORS
    parallel_for(blocks, threads, 64, [&](std::size_t b0, std::size_t b1) {
        for (std::size_t i = b0 * B; i < std::min(n, b1 * B); ++i) {
            const float a = planar ? ab[i] : ab[2 * i], b = planar ? ab[n + i] : ab[2 * i + 1];
            color::compose_luma_pixel(t, gray[i], a, b, t.lightness[gray[i]], rgb + 3 * i);
        }
    });
#else
    parallel_for(blocks, threads, 64, [&](std::size_t b0, std::size_t b1) {
        std::uint8_t g[B], state[B], q[3 * B];
        float a[B], bb[B], target[3 * B], Ls[B];
        const float* lightness = t.lightness.data();
        // the pixels compose_block could not finish, queued until there are W of them (a lane's result does not
        // depend on the others it goes with)
        constexpr std::size_t W = color::vec::kLanes;
        std::uint8_t sg[W];
        float sa[W], sb[W], sL[W], st[3 * W];
        std::size_t sidx[W];
        std::size_t ns = 0;
        auto flush = [&]() {
            if (ns == 0) return;
            for (std::size_t k = ns; k < W; ++k) sg[k] = sg[0], sa[k] = sa[0], sb[k] = sb[0], sL[k] = sL[0];
            color::compose_slow(lightness, t.to_linear.data(), sg, sa, sb, sL, st);
            for (std::size_t k = 0; k < ns; ++k) {
                float tg[3] = {st[k], st[W + k], st[2 * W + k]};
                color::finish_pixel(sg[k], tg, rgb + 3 * sidx[k]);
            }
            ns = 0;
        };
        for (std::size_t blk = b0; blk < b1; ++blk) {
            const std::size_t i0 = blk * B, m = std::min(B, n - i0);
            if (m == B) {
                std::copy(gray + i0, gray + i0 + B, g);
                if (planar) {
                    std::copy(ab + i0, ab + i0 + B, a);
                    std::copy(ab + n + i0, ab + n + i0 + B, bb);
                } else {
                    for (std::size_t i = 0; i < B; ++i) a[i] = ab[2 * (i0 + i)], bb[i] = ab[2 * (i0 + i) + 1];
                }
            } else {
                for (std::size_t i = 0; i < B; ++i) {
                    const std::size_t src = i0 + std::min(i, m - 1);  // pad with the last pixel
                    g[i] = gray[src];
                    a[i] = planar ? ab[src] : ab[2 * src];
                    bb[i] = planar ? ab[n + src] : ab[2 * src + 1];
                }
            }
            color::compose_block(lightness, g, a, bb, target, Ls, q, state);
            std::uint8_t* out = rgb + 3 * i0;
            std::copy(q, q + 3 * m, out);  // the lanes done (state 2); the others are written below
            for (std::size_t i = 0; i < m; ++i) {
                if (state[i] == 2) {
                    continue;
                } else if (state[i] == 1) {
                    float tg[3] = {target[i], target[B + i], target[2 * B + i]};
                    color::finish_pixel(g[i], tg, out + 3 * i);
                } else if (!std::isfinite(a[i]) || !std::isfinite(bb[i]) || (a[i] == 0.0f && bb[i] == 0.0f) ||
                           g[i] == 0 || g[i] == 255) {
                    out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = g[i];  // (as compose_luma_pixel)
                } else {
                    sg[ns] = g[i], sa[ns] = a[i], sb[ns] = bb[i], sL[ns] = Ls[i], sidx[ns] = i0 + i;
                    if (++ns == W) flush();
                }
            }
        }
        flush();
    });
#endif
}

}  // namespace hyperchroma
