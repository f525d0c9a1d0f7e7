// Distinct rows of a (n, words) packed-key array, in order of first appearance: the lookup chain's fallback
// (one-step probes, sorted-index search) runs once per distinct missing key instead of once per pixel.
// An open-addressing table of row numbers (capacity a power of two >= 2n, linear probing, mix64 of the words).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "keys.hpp"
#include "simd.hpp"

namespace hyperchroma {

// The hash of one key (words W) in unique_keys' table; its high 32 bits are the slot's tag.
inline std::uint64_t unique_key_hash(const std::uint64_t* k, std::size_t W) {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (std::size_t w = 0; w < W; ++w) h = mix64(h ^ k[w]);
    return h;
}

// first: the row of each distinct key's first appearance (ascending); inverse[i]: the position in `first` of
// row i's key (keys[first[inverse[i]]] == keys[i]). Returns the number of distinct keys. `slots` is the table's
// memory (a caller's buffer, reused across calls: the lookup chain allocates nothing once it has grown). Each
// slot holds a distinct key's position + 1 in its low 32 bits and its hash's high 32 bits above them, so a slot
// of another key is passed over without reading that key; the hashes are computed a block ahead and their
// slots prefetched (the table is larger than L1 for a frame's misses).
inline std::size_t unique_keys(const std::uint64_t* keys, std::size_t n, int words, std::vector<std::int64_t>& first,
                               std::int64_t* inverse, std::vector<std::int64_t>& slots) {
    first.clear();
    if (n >= 0xFFFFFFFFULL) throw std::length_error("unique_keys: at most 2^32 - 2 keys");
    std::size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots.assign(cap, 0);  // 0 empty, else (hash >> 32) << 32 | (position in `first` + 1)
    const std::size_t mask = cap - 1;
    const std::size_t W = static_cast<std::size_t>(words);
    constexpr std::size_t kAhead = 16;
    std::uint64_t ring[kAhead];
    auto hash_of = [&](std::size_t i) { return unique_key_hash(keys + i * W, W); };
    for (std::size_t i = 0; i < std::min(n, kAhead); ++i) {
        ring[i] = hash_of(i);
        HYPERCHROMA_PREFETCH(&slots[static_cast<std::size_t>(ring[i]) & mask]);
    }
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t h = ring[i % kAhead];
        if (i + kAhead < n) {
            const std::uint64_t h2 = hash_of(i + kAhead);
            ring[i % kAhead] = h2;
            HYPERCHROMA_PREFETCH(&slots[static_cast<std::size_t>(h2) & mask]);
        }
        const std::uint64_t* k = keys + i * W;
        const std::uint64_t tag = h & 0xFFFFFFFF00000000ULL;
        std::size_t s = static_cast<std::size_t>(h) & mask;
        for (;;) {
            const std::int64_t v = slots[s];
            if (v == 0) {
                slots[s] = static_cast<std::int64_t>(tag | (first.size() + 1));
                inverse[i] = static_cast<std::int64_t>(first.size());
                first.push_back(static_cast<std::int64_t>(i));
                break;
            }
            if ((static_cast<std::uint64_t>(v) & 0xFFFFFFFF00000000ULL) == tag) {
                const std::int64_t u = static_cast<std::int64_t>(static_cast<std::uint64_t>(v) & 0xFFFFFFFFULL) - 1;
                const std::uint64_t* o = keys + static_cast<std::size_t>(first[static_cast<std::size_t>(u)]) * W;
                bool same = true;
                for (std::size_t w = 0; w < W; ++w) same = same && o[w] == k[w];
                if (same) {
                    inverse[i] = u;
                    break;
                }
            }
            s = (s + 1) & mask;
        }
    }
    return first.size();
}

// The position of key k among the distinct keys `rows` (words W, in `first` order) whose unique_keys table is
// `slots`, or -1: how a later call finds a key of an earlier call's table (the lookup chain's miss memo).
inline std::int64_t unique_keys_find(const std::vector<std::int64_t>& slots, const std::uint64_t* rows, std::size_t W,
                                     const std::uint64_t* k) {
    constexpr std::uint64_t hi = 0xFFFFFFFF00000000ULL;
    const std::size_t mask = slots.size() - 1;
    const std::uint64_t h = unique_key_hash(k, W), tag = h & hi;
    for (std::size_t s = static_cast<std::size_t>(h) & mask;; s = (s + 1) & mask) {
        const std::uint64_t v = static_cast<std::uint64_t>(slots[s]);
        if (v == 0) return -1;
        if ((v & hi) != tag) continue;
        const std::size_t r = static_cast<std::size_t>(v & ~hi) - 1;
        const std::uint64_t* o = rows + r * W;
        bool same = true;
        for (std::size_t w = 0; w < W; ++w) same = same && o[w] == k[w];
        if (same) return static_cast<std::int64_t>(r);
    }
}

inline std::size_t unique_keys(const std::uint64_t* keys, std::size_t n, int words, std::vector<std::int64_t>& first,
                               std::int64_t* inverse) {
    std::vector<std::int64_t> slots;
    return unique_keys(keys, n, words, first, inverse, slots);
}

}  // namespace hyperchroma
