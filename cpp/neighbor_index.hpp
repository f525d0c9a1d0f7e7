// The entries of a hash table grouped so that a key's one-step neighbours (the entries whose key differs from it
// in exactly one channel, by one level) come out of a few lookups instead of 2 * channels probes.
//
// The channels are split into B contiguous blocks (B = min(kBlocks, channels)). A one-step neighbour of q
// differs from q in one channel, which lies in one block b, so it equals q on every other block: it has q's
// key with block b masked out. Per block, the index keeps every entry under the hash of its key with that
// block masked: open addressing with linear probing at load <= 1/2, a slot holding the entry id and a 10-bit
// tag of the masked hash. A query reads the slots from its B home slots up to the first empty one (the first
// 8 compared at once with SSE2), skips the tags that differ without reading those rows, and checks each
// remaining entry exactly: equal outside block b, one field inside it differing by one level. Each neighbour
// is found exactly once (under the one block holding its differing channel); the key itself (no differing
// field) never is. A query checks the entries equal to it on all blocks but one: about 2 per missing key on a
// 20k-entry film table (56 channels, 8 blocks), against up to 2 * 56 probes of the table.
//
// Memory: 4 bytes a slot, 2-4 slots per entry and block: 64-128 bytes per entry at 8 blocks. HashTable builds
// it on the first one-step lookup after its contents change (the table's content id), and only for tables of
// at most kMaxEntries (2^20) entries (64 MB of index at most); larger tables keep the probes.
// Measured (benchmarks/bench_table.py --one-step, ns per missing query, 1 thread), with the masked hashes by AVX-512:
// 79 against the probes' 240 at 20k entries, 101 / 247 at 100k, 134 / 334 at 1M (scalar hashes, an earlier run:
// 114 / 271, 141 / 286, 220 / 392).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "keys.hpp"
#include "parallel.hpp"
#include "simd.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#define HYPERCHROMA_NEIGHBOR_SSE2 1
#include <emmintrin.h>
#else
#define HYPERCHROMA_NEIGHBOR_SSE2 0
#endif

// The 8 masked hashes of a query have an AVX-512 path (one 64-bit lane a block, VPMULLQ), where simd.hpp has target
// intrinsics.
#define HYPERCHROMA_NEIGHBOR_AVX512 HYPERCHROMA_TARGET_INTRINSICS

namespace hyperchroma {

class NeighborIndex {
public:
    static constexpr int kBlocks = 8;
    // A slot holds an entry id (22 bits) and a 10-bit tag of the masked key's hash, so that the entries of other
    // masked keys met on the way are passed over without reading their rows; all ones is an empty slot.
    static constexpr int kIdBits = 22;
    static constexpr std::uint32_t kIdMask = (std::uint32_t{1} << kIdBits) - 1, kEmpty = 0xFFFFFFFFu;
    // Tables above this size keep the probes (the index would take more than 64 MB); ids stay below kIdMask.
    static constexpr std::size_t kMaxEntries = std::size_t{1} << 20;
    static constexpr std::size_t kPad = 8;

    // row(i): the packed key (layout.words words) of entry i < n <= kMaxEntries.
    template <class Row>
    NeighborIndex(const KeyLayout& layout, std::size_t n, const Row& row, int threads)
        : layout_(layout), words_(layout.words) {
        const int C = layout.channels;
        blocks_ = std::min(kBlocks, C);
        masks_.assign(static_cast<std::size_t>(blocks_) * static_cast<std::size_t>(words_), 0);
        for (int b = 0; b < blocks_; ++b) {  // channels [b * C / B, (b + 1) * C / B)
            const int c0 = b * C / blocks_, c1 = (b + 1) * C / blocks_;
            for (int c = c0; c < c1; ++c) {
                const int w = c / layout.fields_per_word, s = (c % layout.fields_per_word) * layout.bits;
                masks_[static_cast<std::size_t>(b) * static_cast<std::size_t>(words_) + static_cast<std::size_t>(w)] |=
                    layout.field_mask() << s;
            }
        }
        if (blocks_ == kBlocks) {  // the AVX-512 hashes' operands: per word, each block's kept bits; the seeds
            keep_.resize(static_cast<std::size_t>(words_) * kBlocks);
            for (int w = 0; w < words_; ++w)
                for (int b = 0; b < kBlocks; ++b)
                    keep_[static_cast<std::size_t>(w) * kBlocks + static_cast<std::size_t>(b)] =
                        ~masks_[static_cast<std::size_t>(b) * static_cast<std::size_t>(words_) + static_cast<std::size_t>(w)];
            for (int b = 0; b < kBlocks; ++b) seeds_[b] = seed(b);
        }
        shift_ = 64;
        cap_ = 1;
        while (cap_ < 2 * n || cap_ < 8) cap_ <<= 1, --shift_;  // load <= 1/2
        // Linear probing without wrapping around: a run that starts near the end goes on past cap_ (each block's
        // array is as long as its longest run needs), and kPad empty slots follow, so a query reads 8 slots from
        // its home slot without bounds checks.
        slots_.assign(static_cast<std::size_t>(blocks_), {});
        parallel_for(static_cast<std::size_t>(blocks_), threads, 1, [&](std::size_t b0, std::size_t b1) {
            for (std::size_t b = b0; b < b1; ++b) {
                std::vector<std::uint32_t>& sl = slots_[b];
                sl.assign(cap_ + kPad, kEmpty);
                for (std::size_t i = 0; i < n; ++i) {
                    const std::uint64_t h = masked_hash(row(i), static_cast<int>(b));
                    std::size_t pos = home(h);
                    while (sl[pos] != kEmpty) ++pos;
                    sl[pos] = tag_of(h) | static_cast<std::uint32_t>(i);
                    if (pos + kPad >= sl.size()) sl.resize(pos + kPad + 1, kEmpty);
                }
            }
        });
        for (int b = 0; b < blocks_; ++b) base_[b] = slots_[static_cast<std::size_t>(b)].data();
    }
    // base_ points into slots_: not copyable (the tables hold it by shared_ptr)
    NeighborIndex(const NeighborIndex&) = delete;
    NeighborIndex& operator=(const NeighborIndex&) = delete;

    std::size_t memory_bytes() const {
        std::size_t b = (masks_.capacity() + keep_.capacity()) * sizeof(std::uint64_t);
        for (const auto& sl : slots_) b += sl.capacity() * sizeof(std::uint32_t);
        return b;
    }

    // The hash of key q with block b masked out; its home slot (top bits) and tag (low bits, above the id).
    std::uint64_t masked_hash(const std::uint64_t* q, int b) const {
        const std::uint64_t* m = &masks_[static_cast<std::size_t>(b) * static_cast<std::size_t>(words_)];
        std::uint64_t h = seed(b);
        for (int w = 0; w < words_; ++w) h = mix64(h ^ (q[w] & ~m[w])) + 0x9e3779b97f4a7c15ULL;
        return h;
    }
    static std::uint64_t seed(int b) { return 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(b + 1); }
    std::size_t home(std::uint64_t h) const { return static_cast<std::size_t>(h >> shift_); }
    static std::uint32_t tag_of(std::uint64_t h) { return static_cast<std::uint32_t>(h) & ~kIdMask; }

    // The lookups of one query key in three stages, so that a caller can run several keys through them at once
    // (stage a of key i, b of key i - 1, c of key i - 2) and each stage's reads have been prefetched by the one
    // before: (a) the B masked hashes, their home slots prefetched; (b) the slots scanned up to an empty one,
    // the entries with a matching tag kept as candidates, their rows prefetched; (c) the exact checks.
    struct Query {
        std::size_t home[kBlocks];
        std::uint32_t tag[kBlocks];
        std::vector<std::uint32_t> cand;  // candidate entry ids (stage b)
        std::vector<std::uint8_t> block;  // the block each candidate was found under
    };
    void stage_a(const std::uint64_t* q, Query& s) const {
#if HYPERCHROMA_NEIGHBOR_AVX512
        if (avx512_ && blocks_ == kBlocks) {
            hashes_avx512(q, s);
            for (int b = 0; b < kBlocks; ++b) HYPERCHROMA_PREFETCH(base_[b] + s.home[b]);
            return;
        }
#endif
        for (int b = 0; b < blocks_; ++b) {
            const std::uint64_t h = masked_hash(q, b);
            s.home[b] = home(h);
            s.tag[b] = tag_of(h);
            HYPERCHROMA_PREFETCH(base_[b] + s.home[b]);
        }
    }
    template <class Row>
    void stage_b(Query& s, const Row& row) const {
        s.cand.clear();
        s.block.clear();
        for (int b = 0; b < blocks_; ++b) {
            const std::uint32_t* sl = base_[b] + s.home[b];
            const std::uint32_t tag = s.tag[b];
            auto keep = [&](std::uint32_t v) {
                s.cand.push_back(v & kIdMask);
                s.block.push_back(static_cast<std::uint8_t>(b));
                HYPERCHROMA_PREFETCH(row(v & kIdMask));
            };
            std::size_t k = 0;
#if HYPERCHROMA_NEIGHBOR_SSE2
            // the first 8 slots at once: the tag matches before the first empty slot (usually none, or one)
            const __m128i e = _mm_set1_epi32(-1), t = _mm_set1_epi32(static_cast<int>(tag));
            const __m128i hi = _mm_set1_epi32(static_cast<int>(~kIdMask));
            const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sl));
            const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sl + 4));
            const unsigned me = static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v0, e)))) |
                                static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v1, e)))) << 4;
            unsigned mt = static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(v0, hi), t)))) |
                          static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(v1, hi), t)))) << 4;
            if (me != 0) {
                mt &= (me & (0u - me)) - 1;  // the slots before the first empty one
                for (; mt; mt &= mt - 1) keep(sl[detail::ctz64(mt)]);
                continue;
            }
            for (; mt; mt &= mt - 1) keep(sl[detail::ctz64(mt)]);
            k = 8;  // a run of 8 or more: the rest one by one
#endif
            for (;; ++k) {
                const std::uint32_t v = sl[k];
                if (v == kEmpty) break;
                if ((v & ~kIdMask) == tag) keep(v);
            }
        }
    }

    // visit(i) for every candidate i that is a one-step neighbour of q.
    template <class Row, class Visit>
    void stage_c(const std::uint64_t* q, const Query& s, const Row& row, const Visit& visit) const {
        for (std::size_t c = 0; c < s.cand.size(); ++c)
            if (is_neighbor(q, row(s.cand[c]), s.block[c])) visit(s.cand[c]);
    }

    // Whether entry key r equals q outside block b and differs from it in exactly one field of block b, by one level.
    bool is_neighbor(const std::uint64_t* q, const std::uint64_t* r, int b) const {
        const std::uint64_t* m = &masks_[static_cast<std::size_t>(b) * static_cast<std::size_t>(words_)];
        int dw = -1;
        std::uint64_t d = 0;
        for (int w = 0; w < words_; ++w) {
            const std::uint64_t x = r[w] ^ q[w];
            if ((x & ~m[w]) != 0 || (x != 0 && dw >= 0)) return false;
            if (x != 0) dw = w, d = x;
        }
        if (dw < 0) return false;  // the key itself
        const std::uint64_t fmask = layout_.field_mask();
        const int sh = (detail::ctz64(d) / layout_.bits) * layout_.bits;  // the lowest differing field
        if ((d >> sh) > fmask) return false;                                     // more than one field differs
        const std::int64_t le = static_cast<std::int64_t>((r[dw] >> sh) & fmask);
        const std::int64_t lq = static_cast<std::int64_t>((q[dw] >> sh) & fmask);
        return le - lq == 1 || lq - le == 1;
    }

private:
#if HYPERCHROMA_NEIGHBOR_AVX512
    HYPERCHROMA_AVX512_BEGIN
    // masked_hash, home and tag_of of the 8 blocks at once, lane b for block b: the same 64-bit arithmetic.
    __attribute__((target("avx512f,avx512dq,avx2"))) void hashes_avx512(const std::uint64_t* q, Query& s) const {
        const __m512i m1 = _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ULL));
        const __m512i m2 = _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebULL));
        const __m512i c = _mm512_set1_epi64(static_cast<long long>(0x9e3779b97f4a7c15ULL));
        __m512i h = _mm512_loadu_si512(static_cast<const void*>(seeds_));
        for (int w = 0; w < words_; ++w) {
            const __m512i keep = _mm512_loadu_si512(static_cast<const void*>(keep_.data() + static_cast<std::size_t>(w) * kBlocks));
            __m512i x = _mm512_xor_si512(h, _mm512_and_si512(_mm512_set1_epi64(static_cast<long long>(q[w])), keep));
            x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 30));
            x = _mm512_mullo_epi64(x, m1);
            x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 27));
            x = _mm512_mullo_epi64(x, m2);
            x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 31));
            h = _mm512_add_epi64(x, c);
        }
        _mm512_storeu_si512(static_cast<void*>(s.home), _mm512_srlv_epi64(h, _mm512_set1_epi64(shift_)));
        const __m256i tags = _mm256_and_si256(_mm512_cvtepi64_epi32(h), _mm256_set1_epi32(static_cast<int>(~kIdMask)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.tag), tags);
    }
    HYPERCHROMA_AVX512_END
    bool avx512_ = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif
    static_assert(sizeof(std::size_t) == sizeof(std::uint64_t) || !HYPERCHROMA_NEIGHBOR_AVX512, "homes as 64-bit lanes");
    KeyLayout layout_;
    int words_ = 1, blocks_ = 1, shift_ = 64;
    std::size_t cap_ = 1;
    std::vector<std::uint64_t> masks_;  // blocks x words: the block's fields
    std::vector<std::uint64_t> keep_;   // words x 8 (when there are 8 blocks): ~masks_, word-major
    std::uint64_t seeds_[kBlocks] = {};
    std::vector<std::vector<std::uint32_t>> slots_;  // per block: linear probing of tag | entry id, then kPad empty
    const std::uint32_t* base_[kBlocks] = {};        // slots_[b].data(), one load a block instead of two
};

}  // namespace hyperchroma
