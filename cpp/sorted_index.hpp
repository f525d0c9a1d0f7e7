// Sorted index: the fallback for keys absent from the hash table (paper step 6). Entries are sorted by a
// weighted-sum projection of their quantization levels; a query binary-searches its own projection and scans
// outward with two pointers, advancing the side whose projection is closer to the query's.
//
// Distance between two keys = Euclidean distance over their per-channel levels (in level units). Because the
// weights are normalized to unit L2 norm, |proj(x) - proj(y)| <= ||x - y||_2 (Cauchy-Schwarz), so once a
// side's projection gap exceeds the best distance found no further entry on that side can be closer: the
// exact search stops when both sides are finished and equals brute force. The bounded search visits strictly
// the closest projection first and additionally stops after `max_scan` candidates. Both stop at distance 0.
//
// Distances are computed on the packed keys. When a field is 1, 2, 4 or 8 bits wide, fields align to bytes
// and a 256x256 byte-pair table (entry (a << 8) | b = summed squared field differences of bytes a and b;
// uint8 entries for 1 and 2 bits = 64 KiB, uint16 for 4 and 8 bits = 128 KiB; built once, shared) is looked
// up for the 8 bytes of each word where the keys differ (unconditionally: measured 2x faster than skipping
// equal bytes one by one). Other widths decode only the differing fields (XOR walk). Squared distances are
// exact integers; a candidate is abandoned after any word where its partial sum cannot beat the best so far.
//
// The index is immutable after construction: concurrent searches from many threads are safe.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "keys.hpp"
#include "simd.hpp"
#include "parallel.hpp"

// The bounded window of 2-word ternary keys (the default 56 channels) has an AVX-512 path (VPOPCNTQ), where
// simd.hpp has target intrinsics.
#define HYPERCHROMA_WINDOW_AVX512 HYPERCHROMA_TARGET_INTRINSICS

namespace hyperchroma {

namespace detail {

// Byte-pair table for `bits`-wide fields (bits divides 8): sum over the 8 / bits fields of a byte of
// (field(a) - field(b))^2. Fits uint8 for 1 and 2 bits (max 8 and 36), uint16 for 4 and 8 bits (450, 65025).
template <class T>
std::vector<T> make_pair_table(int bits) {
    std::vector<T> table(256 * 256);
    const unsigned mask = (1u << bits) - 1;
    for (unsigned a = 0; a < 256; ++a)
        for (unsigned b = 0; b < 256; ++b) {
            unsigned s = 0;
            for (int sh = 0; sh < 8; sh += bits) {
                const int d = static_cast<int>((a >> sh) & mask) - static_cast<int>((b >> sh) & mask);
                s += static_cast<unsigned>(d * d);
            }
            table[(a << 8) | b] = static_cast<T>(s);
        }
    return table;
}

// Built once on first use (thread-safe static initialization), shared by every index.
inline const std::uint8_t* pair_table_u8(int bits) {
    static const std::vector<std::uint8_t> t1 = make_pair_table<std::uint8_t>(1);
    static const std::vector<std::uint8_t> t2 = make_pair_table<std::uint8_t>(2);
    return bits == 1 ? t1.data() : t2.data();
}
inline const std::uint16_t* pair_table_u16(int bits) {
    static const std::vector<std::uint16_t> t4 = make_pair_table<std::uint16_t>(4);
    static const std::vector<std::uint16_t> t8 = make_pair_table<std::uint16_t>(8);
    return bits == 4 ? t4.data() : t8.data();
}

// Squared distance via the byte-pair table, skipping equal words. Returns early (some value > bound) once
// the partial sum exceeds `bound`.
template <class T>
struct TableDistance {
    const T* table;
    int words;
    std::uint64_t operator()(const std::uint64_t* a, const std::uint64_t* b, std::uint64_t bound) const {
        std::uint64_t s = 0;
        for (int w = 0; w < words; ++w) {
            const std::uint64_t aw = a[w], bw = b[w];
            if (aw != bw)
                for (int sh = 0; sh < 64; sh += 8)
                    s += table[(((aw >> sh) & 0xFF) << 8) | ((bw >> sh) & 0xFF)];
            if (s > bound) return s;
        }
        return s;
    }
};

// Squared distance for any field width: decode the fields where the keys differ.
struct GenericDistance {
    int words;
    int bits;
    std::uint64_t mask;
    std::uint64_t operator()(const std::uint64_t* a, const std::uint64_t* b, std::uint64_t bound) const {
        std::uint64_t s = 0;
        for (int w = 0; w < words; ++w) {
            const std::uint64_t aw = a[w], bw = b[w];
            std::uint64_t x = aw ^ bw;
            while (x) {
                const int sh = (ctz64(x) / bits) * bits;
                const std::int64_t d = static_cast<std::int64_t>((aw >> sh) & mask) -
                                       static_cast<std::int64_t>((bw >> sh) & mask);
                s += static_cast<std::uint64_t>(d * d);
                x &= ~(mask << sh);
            }
            if (s > bound) return s;
        }
        return s;
    }
};


// Squared distance for the default layout, 2-bit fields holding levels 0..2 (3 levels): per field the XOR z of
// the two levels is 01 or 11 for a difference of 1 and 10 for a difference of 2 (0 vs 2), so the sum is
// count(low bit of z) + 4 * count(high bit without low bit). Counted without popcnt (not in the x86-64 baseline)
// by nibble sums: no table and no memory traffic, ~15 register operations a word.
struct TernaryDistance {
    int words;
    static std::uint64_t word_sq(std::uint64_t z) {
        constexpr std::uint64_t m1 = 0x5555555555555555ULL, m2 = 0x3333333333333333ULL, m4 = 0x0F0F0F0F0F0F0F0FULL;
        const std::uint64_t one = z & m1, four = (z >> 1) & ~z & m1;
        // per nibble: number of set (even) bits of each mask, 0..2; then one + 4 * four <= 10 per nibble
        const std::uint64_t c1 = (one & m2) + ((one >> 2) & m2), c4 = (four & m2) + ((four >> 2) & m2);
        std::uint64_t t = c1 + (c4 << 2);
        t = (t & m4) + ((t >> 4) & m4);  // per byte <= 20
        return (t * 0x0101010101010101ULL) >> 56;  // sum of the 8 bytes <= 160
    }
    std::uint64_t operator()(const std::uint64_t* a, const std::uint64_t* b, std::uint64_t bound) const {
        std::uint64_t s = 0;
        for (int w = 0; w < words; ++w) {
            s += word_sq(a[w] ^ b[w]);
            if (s > bound) return s;
        }
        return s;
    }
};

// Squared distances of `count` consecutive stored keys (words W) to q for ternary (3-level 2-bit) keys, branch-free
// (the bounded search's whole window at once; auto-vectorized per clone: the byte sum by shifts, no multiply).
HYPERCHROMA_CLONES inline void ternary_window(const std::uint64_t* __restrict keys, int W, const std::uint64_t* q,
                                              std::size_t count, std::uint32_t* __restrict out) {
    constexpr std::uint64_t m1 = 0x5555555555555555ULL, m2 = 0x3333333333333333ULL, m4 = 0x0F0F0F0F0F0F0F0FULL;
    for (std::size_t j = 0; j < count; ++j) out[j] = 0;
    for (int w = 0; w < W; ++w) {
        const std::uint64_t qw = q[w];
        for (std::size_t j = 0; j < count; ++j) {
            const std::uint64_t z = keys[j * static_cast<std::size_t>(W) + static_cast<std::size_t>(w)] ^ qw;
            const std::uint64_t one = z & m1, four = (z >> 1) & ~z & m1;
            const std::uint64_t c1 = (one & m2) + ((one >> 2) & m2), c4 = (four & m2) + ((four >> 2) & m2);
            std::uint64_t t = c1 + (c4 << 2);
            t = (t & m4) + ((t >> 4) & m4);
            t += t >> 8;
            t += t >> 16;
            t += t >> 32;
            out[j] += static_cast<std::uint32_t>(t & 0xFF);
        }
    }
}

#if HYPERCHROMA_WINDOW_AVX512
HYPERCHROMA_AVX512_BEGIN
// TernaryDistance::word_sq of each of 8 words against the query's words qq, by VPOPCNTQ.
__attribute__((target("avx512f,avx512vpopcntdq"))) inline __m512i ternary_words_avx512(__m512i k, __m512i qq,
                                                                                     __m512i m1) {
    const __m512i z = _mm512_xor_si512(k, qq);
    const __m512i one = _mm512_and_si512(z, m1);
    const __m512i four = _mm512_and_si512(_mm512_andnot_si512(z, _mm512_srli_epi64(z, 1)), m1);
    return _mm512_add_epi64(_mm512_popcnt_epi64(one), _mm512_slli_epi64(_mm512_popcnt_epi64(four), 2));
}

// ternary_window for K <= 64 keys of 2 words, then their minimum and where it is reached, in one pass: returns the
// mask of the window positions j whose squared distance equals the minimum (bit j), the minimum in dmin. Per word
// the same sum as TernaryDistance (the low bits of the XOR, plus 4 for each high bit without its low bit), by
// VPOPCNTQ; four keys a register, their two words' counts added across lanes. Masked loads: nothing past key K is read.
__attribute__((target("avx512f,avx512vpopcntdq"))) inline std::uint64_t ternary_window2_avx512(
    const std::uint64_t* keys, const std::uint64_t* q, std::size_t K, std::uint32_t& dmin) {
    const __m512i m1 = _mm512_set1_epi64(0x5555555555555555LL);
    const __m512i qq = _mm512_set_epi64(static_cast<long long>(q[1]), static_cast<long long>(q[0]),
                                        static_cast<long long>(q[1]), static_cast<long long>(q[0]),
                                        static_cast<long long>(q[1]), static_cast<long long>(q[0]),
                                        static_cast<long long>(q[1]), static_cast<long long>(q[0]));
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i none = _mm512_set1_epi64(0xFFFFFFFFLL);
    alignas(64) std::uint32_t d[64];
    for (std::size_t j0 = 0; j0 < 64; j0 += 8) {
        __m512i dist = none;
        if (j0 < K) {
            const std::size_t c = std::min<std::size_t>(8, K - j0);  // keys of this group
            const __mmask8 ma = static_cast<__mmask8>(c >= 4 ? 0xFF : (1u << (2 * c)) - 1);
            const __mmask8 mb = static_cast<__mmask8>(c > 4 ? (1u << (2 * (c - 4))) - 1 : 0);
            const __m512i wa = ternary_words_avx512(_mm512_maskz_loadu_epi64(ma, keys + 2 * j0), qq, m1);
            const __m512i wb = ternary_words_avx512(_mm512_maskz_loadu_epi64(mb, keys + 2 * j0 + 8), qq, m1);
            const __m512i sum = _mm512_add_epi64(_mm512_permutex2var_epi64(wa, even, wb),
                                                 _mm512_permutex2var_epi64(wa, odd, wb));
            dist = _mm512_mask_mov_epi64(none, static_cast<__mmask8>((1u << c) - 1), sum);
        }
        _mm256_store_si256(reinterpret_cast<__m256i*>(d + j0), _mm512_cvtepi64_epi32(dist));
    }
    __m512i v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm512_load_si512(reinterpret_cast<const void*>(d + 16 * k));
    const __m512i lo = _mm512_min_epu32(_mm512_min_epu32(v[0], v[1]), _mm512_min_epu32(v[2], v[3]));
    dmin = _mm512_reduce_min_epu32(lo);
    const __m512i m = _mm512_set1_epi32(static_cast<int>(dmin));
    std::uint64_t mask = 0;
    for (int k = 0; k < 4; ++k)
        mask |= static_cast<std::uint64_t>(_mm512_cmpeq_epu32_mask(v[k], m)) << (16 * k);
    return mask;
}
HYPERCHROMA_AVX512_END
#endif
}  // namespace detail

struct SearchOptions {
    double max_distance = std::numeric_limits<double>::infinity();  // beyond it the result is -1 (gray)
    std::size_t max_scan = 64;                                       // bounded variant: candidates examined
    bool exact = false;                                              // exact variant: equals brute force
    bool scan = false;  // bounded variant by the one-by-one scan even where the window applies (tests, benchmarks)
    int threads = 1;                                                 // 0 = all hardware threads
    // Optional per-query bound (m floats): a distance another candidate already reaches (an image
    // neighbor's key, say). Only strictly closer-or-equal entries are sought and the scan is pruned there,
    // which makes the exact search cheap; no such entry -> -1 and distance inf.
    const float* bounds = nullptr;
};

// Calls fn(distance functor) with the squared-distance functor that fits the layout's field width.
template <class Fn>
void with_distance(const KeyLayout& layout, Fn&& fn) {
    const int bits = layout.bits, W = layout.words;
    if (bits == 2 && layout.levels == 3)
        fn(detail::TernaryDistance{W});
    else if (bits == 1 || bits == 2)
        fn(detail::TableDistance<std::uint8_t>{detail::pair_table_u8(bits), W});
    else if (bits == 4 || bits == 8)
        fn(detail::TableDistance<std::uint16_t>{detail::pair_table_u16(bits), W});
    else
        fn(detail::GenericDistance{W, bits, layout.field_mask()});
}

class SortedIndex {
public:
    // keys: n rows of layout.words uint64; ab: n rows of 2 float; weights: layout.channels floats (any
    // non-zero finite vector; normalized to unit L2 norm). Throws std::invalid_argument on bad weights or
    // keys with out-of-range levels / non-zero padding bits.
    SortedIndex(const std::uint64_t* keys, const float* ab, std::size_t n, const float* weights,
                const KeyLayout& layout)
        : layout_(layout), n_(n) {
        const int C = layout_.channels;
        double norm2 = 0;
        for (int c = 0; c < C; ++c) {
            const double w = weights[c];
            if (!std::isfinite(w))
                throw std::invalid_argument("weights: must be finite, got " + std::to_string(w) + " at channel " +
                                            std::to_string(c));
            norm2 += w * w;
        }
        if (!(norm2 > 0)) throw std::invalid_argument("weights: must not be all zero");
        const double inv = 1.0 / std::sqrt(norm2);
        weights_.resize(C);
        double l1 = 0;
        for (int c = 0; c < C; ++c) {
            weights_[c] = weights[c] * inv;
            l1 += std::fabs(weights_[c]);
        }
        // |projection| <= l1 * (levels - 1) for every key; rounding errors of a projection are ~1e-16 of that.
        proj_bound_ = l1 * (layout_.levels - 1);
        build_byte_tables();

        const int W = layout_.words;
        std::vector<std::pair<double, std::int64_t>> items(n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t* key = keys + i * W;
            const char* problem = check_key(key);
            if (problem)
                throw std::invalid_argument("keys: row " + std::to_string(i) + " " + problem + " for " +
                                            std::to_string(C) + " channels at " + std::to_string(layout_.levels) +
                                            " levels");
            items[i] = {project(key), static_cast<std::int64_t>(i)};
        }
        // Sort by projection, ties by original row: a stable sort.
        std::sort(items.begin(), items.end());
        keys_.resize(n * W);
        ab_.resize(n * 2);
        proj_.resize(n);
        order_.resize(n);
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t i = static_cast<std::size_t>(items[j].second);
            proj_[j] = items[j].first;
            order_[j] = items[j].second;
            std::copy(keys + i * W, keys + (i + 1) * W, keys_.begin() + j * W);
            ab_[2 * j] = ab[2 * i];
            ab_[2 * j + 1] = ab[2 * i + 1];
        }
        for (std::size_t j = 0; j < n; j += kCoarse) coarse_.push_back(proj_[j]);
        // kCoarse sentinels above every projection after the last entry: lower_positions counts a whole block
        // without a bound check (they are never below a query)
        proj_.insert(proj_.end(), kCoarse, std::numeric_limits<double>::infinity());
    }

    std::size_t size() const { return n_; }
    // The id of these contents (keys.hpp next_content_id); an index never changes after construction.
    std::uint64_t content_id() const { return content_id_; }
    const KeyLayout& layout() const { return layout_; }
    const std::uint64_t* keys() const { return keys_.data(); }
    const float* ab() const { return ab_.data(); }
    const double* projections() const { return proj_.data(); }
    const std::int64_t* order() const { return order_.data(); }
    const double* weights() const { return weights_.data(); }
    std::size_t memory_bytes() const {
        return sizeof(*this) + keys_.capacity() * sizeof(std::uint64_t) + ab_.capacity() * sizeof(float) +
               proj_.capacity() * sizeof(double) + order_.capacity() * sizeof(std::int64_t) +
               byte_proj_.capacity() * sizeof(double) + coarse_.capacity() * sizeof(double) +
               weights_.capacity() * sizeof(double);
    }

    // Projection sum_c w_c * level_c (double, the same summation for stored keys and queries, so equal keys have
    // bit-identical projections). Where fields fill bytes (1, 2, 4 or 8 bits), one table read a byte gives the
    // partial sum of its channels (byte_proj_, built with the weights), 4x fewer dependent adds at 2 bits.
    double project(const std::uint64_t* key) const {
        if (!byte_proj_.empty()) {
            const double* t = byte_proj_.data();
            double s = 0;
            for (std::size_t k = 0; k < proj_bytes_; ++k, t += 256)
                s += t[(key[k >> 3] >> ((k & 7) * 8)) & 0xFF];
            return s;
        }
        const int C = layout_.channels, fpw = layout_.fields_per_word, bits = layout_.bits;
        const std::uint64_t mask = layout_.field_mask();
        double s = 0;
        for (int c0 = 0, w = 0; c0 < C; c0 += fpw, ++w) {
            std::uint64_t word = key[w];
            const int end = std::min(C, c0 + fpw);
            for (int c = c0; c < end; ++c, word >>= bits) s += weights_[c] * static_cast<double>(word & mask);
        }
        return s;
    }

    // nullptr if the key is valid for the layout, else what is wrong with it.
    const char* check_key(const std::uint64_t* key) const { return layout_.key_problem(key); }

    // Nearest stored entry for each of m queries. out_index[i] = sorted position, or -1 when the index is
    // empty or the best distance found exceeds max_distance; out_distance[i] = best distance found (inf if
    // none was examined). Throws std::invalid_argument for invalid query keys.
    void search(const std::uint64_t* queries, std::size_t m, const SearchOptions& opt, std::int64_t* out_index,
                float* out_distance) const {
        if (!(opt.max_distance >= 0)) throw std::invalid_argument("max_distance must be >= 0 (not NaN)");
        if (opt.max_scan < 1) throw std::invalid_argument("max_scan must be >= 1");
        with_distance(layout_, [&](const auto& dist) {
            parallel_for_claimed(m, opt.threads, 256, [&](std::size_t b, std::size_t e) {
                search_range(dist, queries, b, e, opt, out_index, out_distance);
            });
        });
    }

private:
    // byte_proj_[k * 256 + v]: the sum of w_c * level_c over the channels of key byte k (in channel order) when
    // that byte is v; only for fields that fill bytes, and only the bytes that hold channels.
    void build_byte_tables() {
        const int bits = layout_.bits, C = layout_.channels;
        if (8 % bits != 0) return;
        const int per_byte = 8 / bits, fpw = layout_.fields_per_word;
        const std::size_t bytes_per_word = 8;
        const int last_word = layout_.words - 1;
        const int last_fields = C - last_word * fpw;
        proj_bytes_ = static_cast<std::size_t>(last_word) * bytes_per_word +
                      static_cast<std::size_t>((last_fields + per_byte - 1) / per_byte);
        byte_proj_.assign(proj_bytes_ * 256, 0.0);
        const std::uint64_t mask = layout_.field_mask();
        for (std::size_t k = 0; k < proj_bytes_; ++k) {
            const int w = static_cast<int>(k / bytes_per_word), b = static_cast<int>(k % bytes_per_word);
            const int c0 = w * fpw + b * per_byte;
            for (int v = 0; v < 256; ++v) {
                double t = 0;
                std::uint64_t byte = static_cast<std::uint64_t>(v);
                for (int f = 0; f < per_byte && c0 + f < C; ++f, byte >>= bits)
                    t += weights_[static_cast<std::size_t>(c0 + f)] * static_cast<double>(byte & mask);
                byte_proj_[k * 256 + static_cast<std::size_t>(v)] = t;
            }
        }
    }

    // Binary search positions (the first projection >= a query's, std::lower_bound) come from a branch-free search
    // over every kCoarse-th projection (coarse_, small enough for L1), then a count within the block it leaves.
    static constexpr std::size_t kCoarse = 16;

    // project() of count <= 8 consecutive keys, interleaved (the same sums, so bit-identical results).
    void project_block(const std::uint64_t* keys, std::size_t count, double* out) const {
        const std::size_t W = static_cast<std::size_t>(layout_.words);
        if (byte_proj_.empty() || count < 2) {
            for (std::size_t j = 0; j < count; ++j) out[j] = project(keys + j * W);
            return;
        }
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const double* t = byte_proj_.data();
        for (std::size_t k = 0; k < proj_bytes_; ++k, t += 256) {
            const std::size_t w = k >> 3, sh = (k & 7) * 8;
            for (std::size_t j = 0; j < count; ++j) acc[j] += t[(keys[j * W + w] >> sh) & 0xFF];
        }
        for (std::size_t j = 0; j < count; ++j) out[j] = acc[j];
    }

    // The binary search positions of count <= 8 projections, interleaved: the coarse search takes the same steps
    // for all.
    void lower_positions(const double* qp, std::size_t count, std::ptrdiff_t* out) const {
        const std::size_t nc = coarse_.size();
        if (nc == 0) {
            for (std::size_t j = 0; j < count; ++j) out[j] = 0;
            return;
        }
        const double* base = coarse_.data();
        std::size_t at[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        // each step a mask, not a branch: a query's side is a coin toss, and a mispredicted step costs more than
        // the 8 queries' steps together
        for (std::size_t len = nc; len > 1;) {
            const std::size_t half = len / 2;
            for (std::size_t j = 0; j < count; ++j)
                at[j] += half & (std::size_t{0} - static_cast<std::size_t>(base[at[j] + half - 1] < qp[j]));
            len -= half;
        }
        for (std::size_t j = 0; j < count; ++j) {
            const std::size_t i = at[j] + static_cast<std::size_t>(base[at[j]] < qp[j]);
            // the entries (i - 1) * kCoarse + 1 .. i * kCoarse - 1 below the query (sentinels past the last entry);
            // i == 0: none, position 0
            const std::size_t start = i == 0 ? 0 : (i - 1) * kCoarse + 1;
            std::size_t below = 0;
            for (std::size_t x = 0; x < kCoarse - 1; ++x) below += static_cast<std::size_t>(proj_[start + x] < qp[j]);
            out[j] = i == 0 ? 0 : static_cast<std::ptrdiff_t>(start + below);
        }
    }

    template <class Dist>
    void search_range(const Dist& dist, const std::uint64_t* queries, std::size_t begin, std::size_t end,
                      const SearchOptions& opt, std::int64_t* out_index, float* out_distance) const {
        constexpr double inf = std::numeric_limits<double>::infinity();
        constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();
        const int W = layout_.words;
        // Slack on the projection bound for float rounding of the projections (far above their errors).
        const double eps = 1e-9 * (1.0 + proj_bound_);
        const double* proj = proj_.data();
        const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(n_);
        const bool window = !opt.exact && !opt.scan && layout_.bits == 2 && layout_.levels == 3;
        thread_local std::vector<std::uint32_t> window_buf;  // the thread's, kept
        const std::ptrdiff_t K = std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(opt.max_scan), n);
        if (window) window_buf.resize(std::max<std::size_t>(window_buf.size(), static_cast<std::size_t>(K)));
        std::uint32_t* const window_sq = window_buf.data();  // (one TLS address lookup a call, not a few a query)
        // Projections and binary-search positions a block of queries at a time: their dependent chains
        // (table reads and adds, search steps) interleave.
        constexpr std::size_t kBlock = 8;
        double block_qp[kBlock];
        std::ptrdiff_t block_pos[kBlock];
        for (std::size_t i = begin; i < end; ++i) {
            const std::uint64_t* q = queries + i * W;
            const std::size_t k = (i - begin) % kBlock;
            if (k == 0) {
                const std::size_t count = std::min(kBlock, end - i);
                for (std::size_t j = 0; j < count; ++j) {
                    const char* problem = check_key(q + j * W);
                    if (problem)
                        throw std::invalid_argument("queries: row " + std::to_string(i + j) + " " + problem + " for " +
                                                    std::to_string(layout_.channels) + " channels at " +
                                                    std::to_string(layout_.levels) + " levels");
                }
                project_block(q, count, block_qp);
                lower_positions(block_qp, count, block_pos);
            }
            const double qp = block_qp[k];
            std::ptrdiff_t hi = block_pos[k], lo = hi - 1;
            std::uint64_t best_sq = none;
            std::ptrdiff_t best = -1;
            double best_d = inf;
            double cap = opt.max_distance;
            if (opt.bounds && opt.bounds[i] < cap) {
                cap = opt.bounds[i];  // NaN bounds are ignored by the comparison
                // squared distances are integers: accept d^2 <= cap^2, abandon anything larger
                const double sq = std::floor(static_cast<double>(cap) * cap + 1e-6);
                if (sq < 1.8e19) best_sq = static_cast<std::uint64_t>(sq) + 1;  // else: no useful bound
            }
            // A side is finished once its projection gap exceeds `stop`: no entry beyond can be closer.
            double stop = std::min(best_d, cap) + eps;
            // Examines entry j; true once an exact match ends the search.
            auto visit = [&](std::ptrdiff_t j) {
                const std::uint64_t d = dist(keys_.data() + static_cast<std::size_t>(j) * W, q, best_sq - 1);
                if (d < best_sq) {
                    best_sq = d;
                    best = j;
                    best_d = std::sqrt(static_cast<double>(d));
                    stop = std::min(best_d, cap) + eps;
                }
                return d == 0;
            };
            if (opt.exact) {
                // The order of visits only affects speed, not the result: take runs of kRun entries from the
                // closer side, so that the unpredictable side choice is made once per run.
                constexpr int kRun = 8;
                bool lo_open = true, hi_open = true, found = false;
                while (!found) {
                    hi_open = hi_open && hi < n;
                    lo_open = lo_open && lo >= 0;
                    if (!lo_open && !hi_open) break;
                    if (hi_open && (!lo_open || proj[hi] - qp <= qp - proj[lo])) {
                        for (int k = 0; k < kRun; ++k) {
                            if (hi >= n || proj[hi] - qp > stop) { hi_open = false; break; }
                            if ((found = visit(hi++))) break;
                        }
                    } else {
                        for (int k = 0; k < kRun; ++k) {
                            if (lo < 0 || qp - proj[lo] > stop) { lo_open = false; break; }
                            if ((found = visit(lo--))) break;
                        }
                    }
                }
            } else if (window) {
                // Bounded, as a window (same result as the scan below, which visits strictly the closest
                // projection first, the hi side on ties, at most max_scan entries; stopping early on the projection
                // bound only skips entries that cannot be closer). The visited set is the contiguous window
                // [L, L + K) of the K = min(max_scan, n) smallest gaps, found by binary search on L: lo entry L is
                // visited after hi entry L + K exactly when its gap is >= (ties go to hi). All K distances at once,
                // then the first visited of the closest: the lowest index among them on the hi side (>= pos), the
                // highest on the lo side, the hi one first when its gap is <= the lo one's.
                const std::ptrdiff_t pos = hi;
                std::ptrdiff_t a = std::max<std::ptrdiff_t>(0, pos - K), b = std::min<std::ptrdiff_t>(pos, n - K);
                while (a < b) {
                    const std::ptrdiff_t mid = a + (b - a) / 2;
                    if (qp - proj[mid] >= proj[mid + K] - qp) a = mid + 1;
                    else b = mid;
                }
                const std::ptrdiff_t L = a;
                std::uint32_t dmin = std::numeric_limits<std::uint32_t>::max();
                std::ptrdiff_t jh = -1, jl = -1;
#if HYPERCHROMA_WINDOW_AVX512
                if (window2_avx512_ && W == 2 && K >= 1 && K <= 64) {
                    // from the mask of the closest: jh its lowest bit at or above pos, jl its highest below
                    const std::uint64_t eq = detail::ternary_window2_avx512(
                        keys_.data() + static_cast<std::size_t>(L) * 2, q, static_cast<std::size_t>(K), dmin);
                    const unsigned off = static_cast<unsigned>(pos - L);  // 0 .. K
                    const std::uint64_t below = off >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << off) - 1;
                    const std::uint64_t hi_eq = eq & ~below, lo_eq = eq & below;
                    if (hi_eq) jh = L + detail::ctz64(hi_eq);
                    if (lo_eq) jl = L + 63 - __builtin_clzll(lo_eq);
                } else
#endif
                {
                    detail::ternary_window(keys_.data() + static_cast<std::size_t>(L) * W, W, q,
                                           static_cast<std::size_t>(K), window_sq);
                    for (std::ptrdiff_t j = 0; j < K; ++j) dmin = std::min(dmin, window_sq[static_cast<std::size_t>(j)]);
                    for (std::ptrdiff_t j = pos; j < L + K; ++j)
                        if (window_sq[static_cast<std::size_t>(j - L)] == dmin) { jh = j; break; }
                    for (std::ptrdiff_t j = pos - 1; j >= L; --j)
                        if (window_sq[static_cast<std::size_t>(j - L)] == dmin) { jl = j; break; }
                }
                std::ptrdiff_t m = jh;
                if (jl >= 0 && (jh < 0 || !(proj[jh] - qp <= qp - proj[jl]))) m = jl;
                if (m >= 0 && static_cast<std::uint64_t>(dmin) < best_sq) {
                    best = m;
                    best_d = std::sqrt(static_cast<double>(dmin));
                }
            } else {
                // Bounded: strictly closest projection first, at most max_scan entries.
                for (std::size_t scanned = 0; scanned < opt.max_scan; ++scanned) {
                    const double glo = lo >= 0 ? qp - proj[lo] : inf;
                    const double ghi = hi < n ? proj[hi] - qp : inf;
                    const bool take_hi = ghi <= glo;
                    if (take_hi ? hi >= n : lo < 0) break;  // every entry examined
                    if ((take_hi ? ghi : glo) > stop) break;  // both sides finished
                    if (visit(take_hi ? hi++ : lo--)) break;
                }
            }
            out_distance[i] = static_cast<float>(best_d);
            out_index[i] = (best >= 0 && best_d <= cap) ? static_cast<std::int64_t>(best) : -1;
        }
    }

    KeyLayout layout_;
    std::size_t n_ = 0;
    std::uint64_t content_id_ = next_content_id();
    std::vector<double> weights_;      // unit L2 norm
    std::vector<std::uint64_t> keys_;  // sorted by projection, n * words
    std::vector<float> ab_;            // n * 2, same order
    std::vector<double> proj_;         // ascending
    std::vector<std::int64_t> order_;  // original row of each sorted entry
    double proj_bound_ = 0;            // bound on |projection| of any key
    std::vector<double> byte_proj_;    // per key byte, 256 partial projections (fields that fill bytes)
    std::size_t proj_bytes_ = 0;       // key bytes that hold channels
    std::vector<double> coarse_;       // proj_[0], proj_[kCoarse], ... (lower_positions)
#if HYPERCHROMA_WINDOW_AVX512
    bool window2_avx512_ = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
#endif
};

}  // namespace hyperchroma
