// Exact median filter over a k x k window with replicated edges, for (H, W, C) images in C order (channels
// interleaved, each channel filtered on its own). Equals scipy.ndimage.median_filter(img, size=(k, k, 1),
// mode='nearest') and OpenCV medianBlur (BORDER_REPLICATE) exactly.
//
// Values are filtered as order-preserving integer keys: uint8 as itself; float32 through its bit pattern
// (float_key), a total order where -0 < +0 and every NaN (whatever its sign) is above +inf. Every path returns the
// exact (k*k/2)-th smallest key of the window, so the result is a value of the window, and NaN exactly when more
// than half of the window is NaN (the output NaN is the canonical quiet NaN 0x7fffffff).
//
// Paths, chosen by size and dtype:
//   k == 1           copy.
//   k == 3, 5, 7     selection networks, vectorized across consecutive output values of a row (an (H,W,C) row
//                    is W*C values, horizontal neighbours C apart). The image is cut into vertical strips; per
//                    output row the k window rows are edge-padded key slices (a ring buffer, one slice converted
//                    per row), each column of k values is sorted once and shared by the k windows that hold it,
//                    then a pruned network takes the median of the window's k sorted columns (min/max after the
//                    column sort: 3x3 12, 5x5 98, 7x7 290; see Median25 / Median49). Needs (k-1)*C <= 512.
//   uint8, other k   Huang's sliding histogram along each row, with the median tracked incrementally.
//   float32, other k a sorted window slid along each row (k keys out, k keys in per step); windows over
//                    255x255 use a weighted selection over the distinct clamped pixels, so memory stays bounded.
// Rows are split into bands run by parallel_for; every band refills its own halo, so results do not depend
// on the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

// Hot loops are compiled for several instruction sets and picked at load time (simd.hpp); everything else
// is portable code the compiler vectorizes for the baseline.

#if defined(__GNUC__) || defined(__clang__)
#define HC_INLINE inline __attribute__((always_inline))
#define HC_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define HC_INLINE __forceinline
#define HC_RESTRICT __restrict
#else
#define HC_INLINE inline
#define HC_RESTRICT
#endif

// The loops below read and write distinct scratch rows; tell the vectorizer so.
#if defined(__clang__)
#define HC_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define HC_IVDEP _Pragma("GCC ivdep")
#else
#define HC_IVDEP
#endif

namespace hyperchroma {

namespace detail {

// ------------------------------------------------------------------------------------------------ keys

// float32 -> int32 key with the same order as the floats (IEEE totalOrder), all NaNs mapped to the largest key.
HC_INLINE std::int32_t float_key(float f) {
    std::int32_t u;
    std::memcpy(&u, &f, sizeof u);
    const std::int32_t k = u ^ ((u >> 31) & 0x7fffffff);
    return f != f ? 0x7fffffff : k;
}

// Inverse of float_key (the map is an involution on the non-NaN keys; key 0x7fffffff is a quiet NaN).
HC_INLINE float key_float(std::int32_t k) {
    const std::int32_t u = k ^ ((k >> 31) & 0x7fffffff);
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

struct F32 {
    using value = float;
    using key = std::int32_t;
    static HC_INLINE key to_key(value v) { return float_key(v); }
    static HC_INLINE value from_key(key k) { return key_float(k); }
};

struct U8 {
    using value = std::uint8_t;
    using key = std::uint8_t;
    static HC_INLINE key to_key(value v) { return v; }
    static HC_INLINE value from_key(key k) { return k; }
};

// ------------------------------------------------------------------------------------------------ networks

// One comparator of an in-place network on v[]: kCx leaves min in v[a] and max in v[b]; kMin only writes v[a]
// = min, kMax only writes v[b] = max (the other output is never read again).
enum CmpKind : std::uint8_t { kCx, kMin, kMax };
struct Cmp {
    std::uint8_t a, b, kind;
};

// min/max on values with one shared comparison: GCC turns these into vpmin/vpmax; std::min/std::max on array
// elements (references) made it emit compares and blends instead.
template <class T>
HC_INLINE T vmin(T x, T y) {
    return x < y ? x : y;
}
template <class T>
HC_INLINE T vmax(T x, T y) {
    return x < y ? y : x;
}

template <class T, std::uint8_t A, std::uint8_t B, std::uint8_t Kind>
HC_INLINE void cmp(T* v) {
    const T x = v[A], y = v[B];
    if (Kind != kMax) v[A] = vmin(x, y);
    if (Kind != kMin) v[B] = vmax(x, y);
}

template <class Net>
constexpr std::size_t network_size() {
    return sizeof(Net::ops) / sizeof(Cmp);
}

// Index of the first comparator that reads slot w (the network's size if none does).
template <class Net>
constexpr std::size_t first_use(std::size_t w) {
    for (std::size_t i = 0; i < network_size<Net>(); ++i)
        if (Net::ops[i].a == w || Net::ops[i].b == w) return i;
    return network_size<Net>();
}

template <class Net, std::size_t I, class T, class Load>
HC_INLINE void network_step(T* v, const Load& load) {
    constexpr Cmp op = Net::ops[I];
    if constexpr (first_use<Net>(op.a) == I) v[op.a] = load(std::integral_constant<std::size_t, op.a>{});
    if constexpr (first_use<Net>(op.b) == I) v[op.b] = load(std::integral_constant<std::size_t, op.b>{});
    cmp<T, op.a, op.b, op.kind>(v);
}

// Unrolls Net::ops into straight-line min/max code on a local array (which the compiler keeps in registers).
// Slot w is filled by load(integral_constant<w>) just before its first use, so that only the live part of the
// window occupies registers (loading all 25 inputs up front spilled on AVX2's 16 registers).
template <class Net, class T, class Load, std::size_t... I>
HC_INLINE void run_network(T* v, const Load& load, std::index_sequence<I...>) {
    (network_step<Net, I>(v, load), ...);
}
template <class Net, class T, class Load>
HC_INLINE void run_network(T* v, const Load& load) {
    run_network<Net>(v, load, std::make_index_sequence<network_size<Net>()>{});
}
// Same on a slot array that is already filled.
template <class Net, class T>
HC_INLINE void run_network(T* v) {
    run_network<Net>(v, [v](auto w) { return v[decltype(w)::value]; });
}

// Sorting networks for one column (3, 9 and 16 comparators: the optimal sizes).
struct Sort3 {
    static constexpr Cmp ops[] = {{0, 1, kCx}, {1, 2, kCx}, {0, 1, kCx}};
};
struct Sort5 {
    static constexpr Cmp ops[] = {{0, 1, kCx}, {3, 4, kCx}, {2, 4, kCx}, {2, 3, kCx}, {0, 3, kCx},
                                  {0, 2, kCx}, {1, 4, kCx}, {1, 3, kCx}, {1, 2, kCx}};
};
struct Sort7 {
    static constexpr Cmp ops[] = {{0, 6, kCx}, {2, 3, kCx}, {4, 5, kCx}, {0, 2, kCx}, {1, 4, kCx}, {3, 6, kCx},
                                  {0, 1, kCx}, {2, 5, kCx}, {3, 4, kCx}, {1, 2, kCx}, {4, 6, kCx}, {2, 3, kCx},
                                  {4, 5, kCx}, {1, 2, kCx}, {3, 4, kCx}, {5, 6, kCx}};
};

// Median of k*k values given k sorted columns: v[k*c + j] is the j-th smallest of column c, and the median
// ends in v[k*k/2]. Derived offline (a Python script, not shipped) by sorting each rank across the columns,
// then the anti-diagonals, then the candidates still left, and deleting every comparator whose outcome is
// already implied or whose outputs are never used. Both tables were checked exhaustively on every column-sorted
// 0/1 input (6^5 and 8^7 of them; 0/1 principle); tests/test_median.py checks them end to end.
// 5x5: 61 comparators, 98 min/max operations (OpenCV's full 25-input network uses 113 comparators).
struct Median25 {
    static constexpr Cmp ops[] = {
        {0, 5, kCx},    {15, 20, kCx},  {10, 20, kCx},  {10, 15, kMax}, {0, 15, kMax},  {5, 20, kCx},
        {5, 15, kMax},  {1, 6, kCx},    {16, 21, kCx},  {11, 21, kCx},  {11, 16, kCx},  {1, 16, kCx},
        {1, 11, kMax},  {6, 21, kCx},   {6, 16, kCx},   {6, 11, kMax},  {2, 7, kCx},    {17, 22, kCx},
        {12, 22, kCx},  {12, 17, kCx},  {2, 17, kCx},   {2, 12, kMax},  {7, 22, kMin},  {7, 17, kCx},
        {7, 12, kCx},   {3, 8, kCx},    {18, 23, kCx},  {13, 23, kCx},  {13, 18, kCx},  {3, 18, kCx},
        {3, 13, kCx},   {8, 23, kMin},  {8, 18, kMin},  {8, 13, kCx},   {4, 9, kCx},    {19, 24, kCx},
        {14, 24, kCx},  {14, 19, kCx},  {4, 19, kCx},   {4, 14, kCx},   {9, 24, kMin},  {9, 19, kMin},
        {9, 14, kMin},  {3, 7, kMax},   {11, 15, kMax}, {7, 15, kMax},  {4, 8, kCx},    {16, 20, kCx},
        {12, 20, kCx},  {12, 16, kCx},  {4, 16, kCx},   {4, 12, kMax},  {8, 20, kMin},  {8, 16, kMin},
        {8, 12, kMax},  {9, 13, kMin},  {17, 21, kMin}, {9, 17, kMin},  {9, 12, kCx},   {12, 15, kMin},
        {9, 12, kMax}};
};
// 7x7: 169 comparators, 290 min/max operations.
struct Median49 {
    static constexpr Cmp ops[] = {
        {0, 42, kCx}, {14, 21, kCx}, {28, 35, kCx}, {0, 14, kCx}, {7, 28, kCx}, {21, 42, kCx}, {0, 7, kMax},
        {14, 35, kCx}, {21, 28, kCx}, {7, 14, kMax}, {28, 42, kCx}, {14, 21, kMax}, {28, 35, kCx}, {21, 28, kMax},
        {35, 42, kCx}, {1, 43, kCx}, {15, 22, kCx}, {29, 36, kCx}, {1, 15, kCx}, {8, 29, kCx}, {22, 43, kCx},
        {1, 8, kMax}, {15, 36, kCx}, {22, 29, kCx}, {8, 15, kMax}, {29, 43, kCx}, {15, 22, kMax}, {29, 36, kCx},
        {22, 29, kCx}, {36, 43, kCx}, {2, 44, kCx}, {16, 23, kCx}, {30, 37, kCx}, {2, 16, kCx}, {9, 30, kCx},
        {23, 44, kCx}, {2, 9, kMax}, {16, 37, kCx}, {23, 30, kCx}, {9, 16, kCx}, {30, 44, kCx}, {16, 23, kCx},
        {30, 37, kCx}, {9, 16, kMax}, {23, 30, kCx}, {37, 44, kCx}, {3, 45, kCx}, {17, 24, kCx}, {31, 38, kCx},
        {3, 17, kCx}, {10, 31, kCx}, {24, 45, kCx}, {3, 10, kMax}, {17, 38, kCx}, {24, 31, kCx}, {10, 17, kCx},
        {31, 45, kCx}, {17, 24, kCx}, {31, 38, kCx}, {10, 17, kCx}, {24, 31, kCx}, {38, 45, kMin}, {4, 46, kCx},
        {18, 25, kCx}, {32, 39, kCx}, {4, 18, kCx}, {11, 32, kCx}, {25, 46, kCx}, {4, 11, kCx}, {18, 39, kCx},
        {25, 32, kCx}, {11, 18, kCx}, {32, 46, kMin}, {18, 25, kCx}, {32, 39, kMin}, {11, 18, kCx}, {25, 32, kCx},
        {5, 47, kCx}, {19, 26, kCx}, {33, 40, kCx}, {5, 19, kCx}, {12, 33, kCx}, {26, 47, kCx}, {5, 12, kCx},
        {19, 40, kCx}, {26, 33, kCx}, {12, 19, kCx}, {33, 47, kMin}, {19, 26, kCx}, {33, 40, kMin}, {12, 19, kCx},
        {26, 33, kMin}, {6, 48, kCx}, {20, 27, kCx}, {34, 41, kCx}, {6, 20, kCx}, {13, 34, kCx}, {27, 48, kMin},
        {6, 13, kCx}, {20, 41, kMin}, {27, 34, kMin}, {13, 20, kCx}, {20, 27, kMin}, {13, 20, kCx}, {4, 10, kMax},
        {22, 28, kMax}, {16, 28, kMax}, {10, 28, kMax}, {5, 11, kCx}, {17, 23, kCx}, {29, 35, kCx}, {5, 17, kCx},
        {11, 23, kCx}, {11, 17, kCx}, {5, 29, kMax}, {11, 35, kMax}, {17, 29, kMax}, {23, 35, kCx}, {23, 29, kCx},
        {6, 42, kCx}, {18, 24, kCx}, {30, 36, kCx}, {6, 18, kCx}, {12, 30, kCx}, {24, 42, kCx}, {6, 12, kMax},
        {18, 36, kCx}, {24, 30, kCx}, {12, 18, kCx}, {30, 42, kMin}, {18, 24, kCx}, {30, 36, kMin}, {12, 18, kMax},
        {24, 30, kCx}, {13, 19, kCx}, {25, 31, kCx}, {37, 43, kCx}, {13, 25, kCx}, {19, 31, kMin}, {19, 25, kCx},
        {13, 37, kCx}, {19, 43, kMin}, {25, 37, kMin}, {19, 25, kCx}, {20, 26, kMin}, {38, 44, kCx},
        {32, 44, kMin}, {32, 38, kCx}, {20, 38, kMin}, {20, 32, kMin}, {13, 18, kCx}, {25, 28, kCx}, {23, 25, kCx},
        {24, 25, kCx}, {30, 35, kCx}, {13, 23, kMax}, {18, 24, kMax}, {19, 25, kCx}, {20, 28, kMin},
        {19, 23, kMax}, {20, 24, kCx}, {20, 23, kCx}, {24, 25, kCx}, {23, 29, kMax}, {24, 30, kMin},
        {25, 35, kMin}, {20, 24, kMax}, {25, 29, kMin}, {24, 25, kMin}};
};

template <int K>
struct Networks;
template <>
struct Networks<5> {
    using Sort = Sort5;
    using Select = Median25;
};
template <>
struct Networks<7> {
    using Sort = Sort7;
    using Select = Median49;
};

template <class T>
HC_INLINE T med3(T a, T b, T c) {
    return vmax(vmin(a, b), vmin(vmax(a, b), c));
}

// The networks work on vertical strips of the image, one output row of a strip at a time: the k rows of the
// window are edge-padded key slices of the strip (ring buffer, one slice converted per output row), their
// columns are sorted once into the scratch rows, and the selection reads the k sorted columns of each window.
// Strips keep all of this (k slices + k scratch rows, about 24 KiB for 5x5 float32) small enough for L1;
// with full-width rows of a 1024-pixel, 2-channel image (about 64 KiB) 5x5 float32 ran about 1.4x slower.
//
// Scratch row stride (keys): room for a strip row, its halo and vector slack. A compile-time stride lets every
// load of the k*k window use one of k base pointers plus a constant displacement (with a runtime stride GCC kept
// 25 pointers and spilled them).
constexpr std::size_t kStride = 1024 + 64;
// Outputs per strip row at most, and the largest halo (k-1)*C the networks serve.
constexpr std::size_t kStripValues = 512;
constexpr std::size_t kMaxHalo = 512;
// Widest vector in keys (64 uint8 in a 512-bit register). Strips hold whole vectors where the image allows, and
// slices carry this many keys of slack so the column sort can run whole vectors past their end.
constexpr std::size_t kVectorPad = 64;
static_assert(kStripValues + kMaxHalo + kVectorPad <= kStride, "scratch rows too short");

// Median of k x k windows (k = 3, 5 or 7) for n <= kStripValues consecutive output values of one row.
// rows[j]: edge-padded key slice j of the window (n + (k-1)*step keys, plus kVectorPad of slack); output i
// reads rows[j][i + c*step] for c < k. scratch: k * kStride keys, 64-byte aligned. (k-1)*step <= kMaxHalo.
template <class Tr, int K>
HC_INLINE void network_row(const typename Tr::key* const* rows, typename Tr::value* HC_RESTRICT dst,
                           std::size_t n, std::size_t step, typename Tr::key* HC_RESTRICT scratch) {
    using Key = typename Tr::key;
    static_assert(K == 3 || K == 5 || K == 7, "networks exist for 3x3, 5x5 and 7x7");
    constexpr std::size_t S = kStride, V = kVectorPad;
    const std::size_t len = (n + (K - 1) * step + V - 1) / V * V;  // whole vectors, into the slack
    // 1. sort every column once: s[j*S + t] is the j-th smallest of column t.
    Key* HC_RESTRICT s = scratch;
    const Key* r[K];
    for (int j = 0; j < K; ++j) r[j] = rows[j];
    HC_IVDEP
    for (std::size_t t = 0; t < len; ++t) {
        Key v[K];
        for (int j = 0; j < K; ++j) v[j] = r[j][t];
        if constexpr (K == 3) {
            run_network<Sort3>(v);
        } else {
            run_network<typename Networks<K>::Sort>(v);
        }
        for (int j = 0; j < K; ++j) s[static_cast<std::size_t>(j) * S + t] = v[j];
    }
    // 2. median of the k sorted columns of every window; col[c] points at the window's column c.
    const Key* col[K];
    for (int c = 0; c < K; ++c) col[c] = s + static_cast<std::size_t>(c) * step;
    if constexpr (K == 3) {
        // Paeth: max of the column minima, median of the column medians, min of the column maxima.
        HC_IVDEP
        for (std::size_t i = 0; i < n; ++i) {
            const Key a = vmax(vmax(col[0][i], col[1][i]), col[2][i]);
            const Key b = med3(col[0][S + i], col[1][S + i], col[2][S + i]);
            const Key c = vmin(vmin(col[0][2 * S + i], col[1][2 * S + i]), col[2][2 * S + i]);
            dst[i] = Tr::from_key(med3(a, b, c));
        }
    } else {
        HC_IVDEP
        for (std::size_t i = 0; i < n; ++i) {
            const auto load = [&](auto w) {  // slot k*c + j: j-th smallest of window column c
                constexpr std::size_t c = decltype(w)::value / K, j = decltype(w)::value % K;
                return col[c][j * S + i];
            };
            Key v[K * K];
            run_network<typename Networks<K>::Select>(v, load);
            dst[i] = Tr::from_key(v[K * K / 2]);
        }
    }
}

// Keys of pixels lo .. lo+count-1 of one row (C values each), indices clamped into 0 .. W-1 (replicated edges).
template <class Tr>
HC_INLINE void pad_slice(const typename Tr::value* HC_RESTRICT row, typename Tr::key* HC_RESTRICT out,
                         std::size_t W, std::size_t C, std::ptrdiff_t lo, std::size_t count) {
    const std::ptrdiff_t hi = lo + static_cast<std::ptrdiff_t>(count), w = static_cast<std::ptrdiff_t>(W);
    const std::ptrdiff_t a = std::max<std::ptrdiff_t>(lo, 0), b = std::min(hi, w);  // pixels inside the row
    std::size_t o = 0;
    for (std::ptrdiff_t p = lo; p < std::min<std::ptrdiff_t>(0, hi); ++p, o += C)
        for (std::size_t c = 0; c < C; ++c) out[o + c] = Tr::to_key(row[c]);
    if (a < b) {
        const typename Tr::value* HC_RESTRICT in = row + static_cast<std::size_t>(a) * C;
        typename Tr::key* HC_RESTRICT mid = out + o;
        const std::size_t m = static_cast<std::size_t>(b - a) * C;
        for (std::size_t i = 0; i < m; ++i) mid[i] = Tr::to_key(in[i]);
        o += m;
    }
    for (std::ptrdiff_t p = std::max(w, lo); p < hi; ++p, o += C)
        for (std::size_t c = 0; c < C; ++c) out[o + c] = Tr::to_key(row[(W - 1) * C + c]);
}

// The dispatched entry points (one clone per instruction set). Plain functions, not templates, so every
// compiler that supports target_clones accepts them.
HYPERCHROMA_CLONES inline void pad_slice_f32(const float* row, std::int32_t* out, std::size_t W, std::size_t C,
                                    std::ptrdiff_t lo, std::size_t count) {
    pad_slice<F32>(row, out, W, C, lo, count);
}
HYPERCHROMA_CLONES inline void pad_slice_u8(const std::uint8_t* row, std::uint8_t* out, std::size_t W, std::size_t C,
                                   std::ptrdiff_t lo, std::size_t count) {
    pad_slice<U8>(row, out, W, C, lo, count);
}
inline void pad_slice_any(const float* row, std::int32_t* out, std::size_t W, std::size_t C, std::ptrdiff_t lo,
                          std::size_t count) {
    pad_slice_f32(row, out, W, C, lo, count);
}
inline void pad_slice_any(const std::uint8_t* row, std::uint8_t* out, std::size_t W, std::size_t C,
                          std::ptrdiff_t lo, std::size_t count) {
    pad_slice_u8(row, out, W, C, lo, count);
}

#define HC_NETWORK_ROW(name, Tr, K)                                                                           \
    HYPERCHROMA_CLONES inline void name(const Tr::key* const* rows, Tr::value* dst, std::size_t n, std::size_t step,   \
                               Tr::key* scratch) {                                                            \
        network_row<Tr, K>(rows, dst, n, step, scratch);                                                      \
    }
HC_NETWORK_ROW(row3_f32, F32, 3)
HC_NETWORK_ROW(row5_f32, F32, 5)
HC_NETWORK_ROW(row7_f32, F32, 7)
HC_NETWORK_ROW(row3_u8, U8, 3)
HC_NETWORK_ROW(row5_u8, U8, 5)
HC_NETWORK_ROW(row7_u8, U8, 7)
#undef HC_NETWORK_ROW

inline void network_row_any(int k, const std::int32_t* const* rows, float* dst, std::size_t n, std::size_t step,
                            std::int32_t* scratch) {
    (k == 3 ? row3_f32 : k == 5 ? row5_f32 : row7_f32)(rows, dst, n, step, scratch);
}
inline void network_row_any(int k, const std::uint8_t* const* rows, std::uint8_t* dst, std::size_t n,
                            std::size_t step, std::uint8_t* scratch) {
    (k == 3 ? row3_u8 : k == 5 ? row5_u8 : row7_u8)(rows, dst, n, step, scratch);
}

// Whether the network path serves this window and channel count.
inline bool network_fits(std::int64_t k, std::size_t C) {
    return k >= 3 && k <= 7 && static_cast<std::size_t>(k - 1) * C <= kMaxHalo;
}

// ------------------------------------------------------------------------------------------------ bands

inline std::size_t clamp_index(std::ptrdiff_t i, std::size_t n) {
    return i < 0 ? 0 : (static_cast<std::size_t>(i) >= n ? n - 1 : static_cast<std::size_t>(i));
}

// First 64-byte aligned element at or after p (the buffer must have 64 bytes of slack): whole-vector stores
// into the scratch rows then never straddle cache lines.
template <class T>
T* align64(T* p) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<T*>((a + 63) & ~std::uintptr_t{63});
}

// Keeps the k edge-padded key slices y-r .. y+r (pixels p0-r .. p1-1+r of a strip) of the window of output row
// y; moving down one row converts one new slice. Its memory is the calling thread's, kept for the next ring
// (no allocation once grown): at most one ring per thread at a time.
template <class Tr>
class RowRing {
public:
    using Key = typename Tr::key;
    // Room for strips up to max_pixels wide.
    RowRing(const typename Tr::value* src, std::size_t H, std::size_t W, std::size_t C, int k, std::size_t max_pixels)
        : src_(src), H_(H), W_(W), C_(C), k_(k), r_(k / 2),
          slot_len_((max_pixels + 2 * static_cast<std::size_t>(k / 2)) * C + kVectorPad),
          buf_(storage().buf), rows_(storage().rows) {
        if (buf_.size() < static_cast<std::size_t>(k) * slot_len_ + kVectorPad)
            buf_.resize(static_cast<std::size_t>(k) * slot_len_ + kVectorPad);
        rows_.resize(static_cast<std::size_t>(k));
    }

    // Work on pixels p0 .. p1-1 from now on (forgets the slices held).
    void set_strip(std::size_t p0, std::size_t p1) {
        p0_ = p0;
        p1_ = p1;
        filled_ = false;
    }

    // Slices of the window of output row y, top to bottom. Fastest when called for y, y+1, ...
    const Key* const* window(std::size_t y) {
        const std::ptrdiff_t top = static_cast<std::ptrdiff_t>(y) - r_;
        if (!filled_ || top != next_top_) {
            for (int j = 0; j < k_; ++j) load(top + j);
        } else {
            load(top + k_ - 1);
        }
        filled_ = true;
        next_top_ = top + 1;
        prefetch(top + k_);
        for (int j = 0; j < k_; ++j) rows_[static_cast<std::size_t>(j)] = slot(top + j);
        return rows_.data();
    }

private:
    struct Storage {
        std::vector<Key> buf;
        std::vector<const Key*> rows;
    };
    static Storage& storage() {
        thread_local Storage s;
        return s;
    }
    Key* slot(std::ptrdiff_t yy) {
        const std::ptrdiff_t k = k_;
        return align64(buf_.data()) + static_cast<std::size_t>(((yy % k) + k) % k) * slot_len_;
    }
    // Asks for the source pixels of the next slice ahead of time: a strip reads only a few cache lines per
    // image row, too few for the hardware prefetchers to catch on.
    void prefetch(std::ptrdiff_t yy) const {
#if defined(__GNUC__) || defined(__clang__)
        const std::size_t a = clamp_index(static_cast<std::ptrdiff_t>(p0_) - r_, W_) * C_;
        const std::size_t b = (clamp_index(static_cast<std::ptrdiff_t>(p1_) - 1 + r_, W_) + 1) * C_;
        const char* row = reinterpret_cast<const char*>(src_ + clamp_index(yy, H_) * W_ * C_);
        for (std::size_t o = a * sizeof(*src_); o < b * sizeof(*src_); o += 64) __builtin_prefetch(row + o);
#else
        (void)yy;
#endif
    }
    void load(std::ptrdiff_t yy) {
        pad_slice_any(src_ + clamp_index(yy, H_) * W_ * C_, slot(yy), W_, C_,
                      static_cast<std::ptrdiff_t>(p0_) - r_, p1_ - p0_ + 2 * static_cast<std::size_t>(r_));
    }

    const typename Tr::value* src_;
    std::size_t H_, W_, C_;
    int k_;
    std::ptrdiff_t r_;
    std::size_t slot_len_;
    std::vector<Key>& buf_;
    std::vector<const Key*>& rows_;
    std::size_t p0_ = 0, p1_ = 0;
    bool filled_ = false;
    std::ptrdiff_t next_top_ = 0;
};

// Rows per band handed to one thread at a time: enough that refilling the k-1 halo rows stays cheap.
inline std::size_t min_band_rows(int k) { return static_cast<std::size_t>(std::max(8, 4 * k)); }

// Strip width in pixels: a multiple of 64 pixels where that keeps a row of the strip within kStripValues
// (so every strip row is whole vectors), else as many pixels as fit.
inline std::size_t strip_pixels(std::size_t W, std::size_t C) {
    const std::size_t whole = kStripValues / kVectorPad / C * kVectorPad;
    const std::size_t p = whole > 0 ? whole : std::max<std::size_t>(1, kStripValues / C);
    return std::min(p, W);
}

template <class Tr>
void median_network(const typename Tr::value* src, typename Tr::value* dst, std::size_t H, std::size_t W,
                    std::size_t C, int k, int threads) {
    using Key = typename Tr::key;
    const std::size_t n = W * C, bp = strip_pixels(W, C);
    // a band of at least 2^17 values a thread: the network takes well under a nanosecond a value, and waking a
    // helper costs more than a model-size ab image (224x164x2: 0.04 ms alone, 0.09 with a second thread)
    const std::size_t min_rows = std::max(min_band_rows(k), (std::size_t{1} << 17) / std::max<std::size_t>(n, 1));
    parallel_for(H, threads, min_rows, [&](std::size_t y0, std::size_t y1) {
        RowRing<Tr> ring(src, H, W, C, k, bp);
        thread_local std::vector<Key> scratch;  // the thread's, kept
        scratch.resize(std::max(scratch.size(), static_cast<std::size_t>(k) * kStride + kVectorPad));
        Key* sp = align64(scratch.data());
        for (std::size_t p0 = 0; p0 < W; p0 += bp) {
            // The last strip is moved left to end at W (recomputing a few outputs, identically) so that it is as
            // wide as the others and its rows stay whole vectors.
            const std::size_t q0 = std::min(p0, W - bp);
            ring.set_strip(q0, q0 + bp);
            for (std::size_t y = y0; y < y1; ++y)
                network_row_any(k, ring.window(y), dst + y * n + q0 * C, bp * C, C, sp);
        }
    });
}

// ------------------------------------------------------------------------------------------------ generic

// The clamped window along one axis of length n around i with radius r: the distinct indices lo..hi (weight 1
// each) plus extra copies of the first and last index from replication.
struct AxisWindow {
    std::size_t lo, hi;
    std::int64_t extra_lo, extra_hi;
};
inline AxisWindow axis_window(std::size_t i, std::size_t n, std::int64_t r) {
    const std::int64_t ii = static_cast<std::int64_t>(i), last = static_cast<std::int64_t>(n) - 1;
    AxisWindow w;
    w.lo = static_cast<std::size_t>(std::max<std::int64_t>(ii - r, 0));
    w.hi = static_cast<std::size_t>(std::min<std::int64_t>(ii + r, last));
    w.extra_lo = std::max<std::int64_t>(r - ii, 0);
    w.extra_hi = std::max<std::int64_t>(ii + r - last, 0);
    return w;
}

// uint8, any k: Huang's algorithm. Per output row, one 256-bin histogram per channel holds the window (with
// replication weights); moving right removes one clamped column and adds one. The median is tracked as the
// bin m with lt = (number of values < m) <= rank < lt + h[m], so each step only walks a few bins.
HYPERCHROMA_CLONES inline void median_huang_rows(const std::uint8_t* src, std::uint8_t* dst, std::size_t H, std::size_t W,
                                        std::size_t C, std::int64_t k, std::size_t y0, std::size_t y1) {
    const std::int64_t r = k / 2, rank = (k * k) / 2;
    const std::size_t n = W * C;
    std::vector<std::int64_t> hist(256 * C);
    std::vector<int> med(C);
    std::vector<std::int64_t> lt(C);
    std::vector<const std::uint8_t*> row_ptr;
    std::vector<std::int64_t> row_w;
    for (std::size_t y = y0; y < y1; ++y) {
        // distinct rows of the window with their replication weights
        const AxisWindow aw = axis_window(y, H, r);
        row_ptr.clear();
        row_w.clear();
        for (std::size_t yy = aw.lo; yy <= aw.hi; ++yy) {
            row_ptr.push_back(src + yy * n);
            row_w.push_back(1 + (yy == 0 ? aw.extra_lo : 0) + (yy == H - 1 ? aw.extra_hi : 0));
        }
        const std::size_t nr = row_ptr.size();
        // window of x = 0
        std::fill(hist.begin(), hist.end(), 0);
        const AxisWindow xw = axis_window(0, W, r);
        for (std::size_t x = xw.lo; x <= xw.hi; ++x) {
            const std::int64_t wx = 1 + (x == 0 ? xw.extra_lo : 0) + (x == W - 1 ? xw.extra_hi : 0);
            for (std::size_t j = 0; j < nr; ++j)
                for (std::size_t c = 0; c < C; ++c) hist[c * 256 + row_ptr[j][x * C + c]] += wx * row_w[j];
        }
        for (std::size_t c = 0; c < C; ++c) {
            const std::int64_t* h = hist.data() + c * 256;
            std::int64_t below = 0;
            int m = 0;
            while (below + h[m] <= rank) below += h[m++];
            med[c] = m;
            lt[c] = below;
        }
        std::uint8_t* out = dst + y * n;
        for (std::size_t c = 0; c < C; ++c) out[c] = static_cast<std::uint8_t>(med[c]);
        for (std::size_t x = 1; x < W; ++x) {
            const std::size_t x_out = clamp_index(static_cast<std::ptrdiff_t>(x) - 1 - r, W);
            const std::size_t x_in = clamp_index(static_cast<std::ptrdiff_t>(x) + r, W);
            if (x_out != x_in) {
                for (std::size_t j = 0; j < nr; ++j) {
                    const std::uint8_t* po = row_ptr[j] + x_out * C;
                    const std::uint8_t* pi = row_ptr[j] + x_in * C;
                    const std::int64_t w = row_w[j];
                    for (std::size_t c = 0; c < C; ++c) {
                        std::int64_t* h = hist.data() + c * 256;
                        const int vo = po[c], vi = pi[c], m = med[c];
                        h[vo] -= w;
                        h[vi] += w;
                        lt[c] += ((vi < m) - (vo < m)) * w;
                    }
                }
                for (std::size_t c = 0; c < C; ++c) {
                    const std::int64_t* h = hist.data() + c * 256;
                    int m = med[c];
                    std::int64_t below = lt[c];
                    while (below > rank) below -= h[--m];
                    while (below + h[m] <= rank) below += h[m++];
                    med[c] = m;
                    lt[c] = below;
                }
            }
            for (std::size_t c = 0; c < C; ++c) out[x * C + c] = static_cast<std::uint8_t>(med[c]);
        }
    }
}

// Replaces one occurrence of old by nu in the sorted w[0..n), keeping it sorted: the values between the two
// positions shift by one (memmove). Small windows find the positions by counting (one branch-free, vectorized
// pass); larger ones by binary search, which wins once the count passes grow (measured crossover near 31x31).
HC_INLINE void sorted_replace(std::int32_t* w, std::size_t n, std::int32_t old, std::int32_t nu) {
    if (old == nu) return;
    std::size_t p, q;  // p: first old (lower bound); q: lower bound of nu moving up, upper bound moving down
    if (n <= 31 * 31) {
        std::size_t below_old = 0, below_nu = 0;
        if (old < nu) {
            for (std::size_t i = 0; i < n; ++i) {
                below_old += w[i] < old;
                below_nu += w[i] < nu;
            }
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                below_old += w[i] < old;
                below_nu += w[i] <= nu;
            }
        }
        p = below_old;
        q = below_nu;
    } else {
        p = static_cast<std::size_t>(std::lower_bound(w, w + n, old) - w);
        q = static_cast<std::size_t>(old < nu ? std::lower_bound(w + p + 1, w + n, nu) - w
                                              : std::upper_bound(w, w + p, nu) - w);
    }
    if (old < nu) {  // w[p+1 .. q) are in [old, nu): shift them left, nu goes last
        std::memmove(w + p, w + p + 1, (q - p - 1) * sizeof *w);
        w[q - 1] = nu;
    } else {  // w[q .. p) are in (nu, old]: shift them right, nu goes first
        std::memmove(w + q + 1, w + q, (p - q) * sizeof *w);
        w[q] = nu;
    }
}

// float32, sizes without a network (up to kMaxGatheredWindow values): per output row and channel, the window's
// k*k keys (gathered from the padded slices) are kept sorted while the window slides right; each step swaps the
// k keys of the column leaving for the k of the column entering. That is O(k^2) data movement per output, yet
// it measured about 2-3x faster than std::nth_element over the gathered window at the sizes tried (9 to 151).
// Keys are a strict total order, so NaNs cannot upset the ordering.
HYPERCHROMA_CLONES inline void median_sliding_rows(const float* src, float* dst, std::size_t H, std::size_t W,
                                          std::size_t C, int k, std::size_t y0, std::size_t y1) {
    const std::size_t n = W * C, kk = static_cast<std::size_t>(k) * static_cast<std::size_t>(k);
    const std::size_t rank = kk / 2, uk = static_cast<std::size_t>(k);
    RowRing<F32> ring(src, H, W, C, k, W);
    ring.set_strip(0, W);
    std::vector<std::int32_t> buf(kk);
    for (std::size_t y = y0; y < y1; ++y) {
        const std::int32_t* const* rows = ring.window(y);
        float* out = dst + y * n;
        for (std::size_t c = 0; c < C; ++c) {
            std::int32_t* w = buf.data();  // window of output pixel 0: padded pixels 0..k-1 of every slice
            for (std::size_t j = 0; j < uk; ++j)
                for (std::size_t x = 0; x < uk; ++x) *w++ = rows[j][x * C + c];
            w = buf.data();
            std::sort(w, w + kk);
            out[c] = key_float(w[rank]);
            for (std::size_t x = 1; x < W; ++x) {
                const std::size_t leave = (x - 1) * C + c, enter = leave + uk * C;  // padded value indices
                for (std::size_t j = 0; j < uk; ++j) sorted_replace(w, kk, rows[j][leave], rows[j][enter]);
                out[x * C + c] = key_float(w[rank]);
            }
        }
    }
}

// float32, huge windows: the distinct clamped pixels with replication weights (at most H*W of them) sorted,
// then the weight prefix that passes the rank. Memory stays O(H*W) whatever k is.
inline void median_weighted_rows(const float* src, float* dst, std::size_t H, std::size_t W, std::size_t C,
                                 std::int64_t k, std::size_t y0, std::size_t y1) {
    const std::int64_t r = k / 2, rank = (k * k) / 2;
    const std::size_t n = W * C;
    std::vector<std::pair<std::int32_t, std::int64_t>> items;
    for (std::size_t y = y0; y < y1; ++y) {
        const AxisWindow yw = axis_window(y, H, r);
        for (std::size_t x = 0; x < W; ++x) {
            const AxisWindow xw = axis_window(x, W, r);
            for (std::size_t c = 0; c < C; ++c) {
                items.clear();
                for (std::size_t yy = yw.lo; yy <= yw.hi; ++yy) {
                    const std::int64_t wy = 1 + (yy == 0 ? yw.extra_lo : 0) + (yy == H - 1 ? yw.extra_hi : 0);
                    for (std::size_t xx = xw.lo; xx <= xw.hi; ++xx) {
                        const std::int64_t wx = 1 + (xx == 0 ? xw.extra_lo : 0) + (xx == W - 1 ? xw.extra_hi : 0);
                        items.emplace_back(float_key(src[yy * n + xx * C + c]), wx * wy);
                    }
                }
                std::sort(items.begin(), items.end());
                std::int64_t seen = 0;
                std::size_t i = 0;
                while (seen + items[i].second <= rank) seen += items[i++].second;
                dst[y * n + x * C + c] = key_float(items[i].first);
            }
        }
    }
}

// float32 windows up to this many values are gathered whole; larger ones use the weighted selection.
constexpr std::int64_t kMaxGatheredWindow = 255 * 255;

}  // namespace detail

// ------------------------------------------------------------------------------------------------ public API

// Largest accepted window side: keeps k*k and the padded row lengths far from overflow.
constexpr std::int64_t kMaxMedianSize = (std::int64_t{1} << 30) - 1;

inline void check_median_args(std::size_t H, std::size_t W, std::size_t C, std::int64_t size) {
    if (H == 0 || W == 0 || C == 0)
        throw std::invalid_argument("median_filter: empty image (" + std::to_string(H) + "x" + std::to_string(W) +
                                    "x" + std::to_string(C) + ")");
    if (size < 1 || size % 2 == 0)
        throw std::invalid_argument("median_filter: size must be an odd number >= 1, got " + std::to_string(size));
    if (size > kMaxMedianSize)
        throw std::invalid_argument("median_filter: size " + std::to_string(size) + " is too large (max " +
                                    std::to_string(kMaxMedianSize) + ")");
}

// Median over size x size windows with replicated edges, per channel, of an (H, W, C) C-order image.
// dst must not overlap src. threads: 1 = calling thread only, <= 0 = all hardware threads.
inline void median_filter(const std::uint8_t* src, std::uint8_t* dst, std::size_t H, std::size_t W, std::size_t C,
                          std::int64_t size, int threads = 1) {
    check_median_args(H, W, C, size);
    if (size == 1) {
        std::copy(src, src + H * W * C, dst);
    } else if (detail::network_fits(size, C)) {
        detail::median_network<detail::U8>(src, dst, H, W, C, static_cast<int>(size), threads);
    } else {
        parallel_for(H, threads, detail::min_band_rows(8), [&](std::size_t y0, std::size_t y1) {
            detail::median_huang_rows(src, dst, H, W, C, size, y0, y1);
        });
    }
}

inline void median_filter(const float* src, float* dst, std::size_t H, std::size_t W, std::size_t C,
                          std::int64_t size, int threads = 1) {
    check_median_args(H, W, C, size);
    if (size == 1) {
        std::copy(src, src + H * W * C, dst);
    } else if (detail::network_fits(size, C)) {
        detail::median_network<detail::F32>(src, dst, H, W, C, static_cast<int>(size), threads);
    } else if (size * size <= detail::kMaxGatheredWindow) {
        parallel_for(H, threads, 1, [&](std::size_t y0, std::size_t y1) {
            detail::median_sliding_rows(src, dst, H, W, C, static_cast<int>(size), y0, y1);
        });
    } else {
        parallel_for(H, threads, 1, [&](std::size_t y0, std::size_t y1) {
            detail::median_weighted_rows(src, dst, H, W, C, size, y0, y1);
        });
    }
}

}  // namespace hyperchroma
