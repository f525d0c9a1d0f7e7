// Distinct rows of a (n, words) packed-key array, in order of first appearance: the lookup chain's fallback
// (one-step probes, sorted-index search) runs once per distinct missing key instead of once per pixel.
// An open-addressing table of row numbers (capacity a power of two >= 2n, linear probing, mix64 of the words).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "keys.hpp"

namespace hyperchroma {

// first: the row of each distinct key's first appearance (ascending); inverse[i]: the position in `first` of
// row i's key (keys[first[inverse[i]]] == keys[i]). Returns the number of distinct keys. `slots` is the table's
// memory (a caller's buffer, reused across calls: the lookup chain allocates nothing once it has grown).
inline std::size_t unique_keys(const std::uint64_t* keys, std::size_t n, int words, std::vector<std::int64_t>& first,
                               std::int64_t* inverse, std::vector<std::int64_t>& slots) {
    first.clear();
    std::size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots.assign(cap, -1);  // position in `first`, -1 empty
    const std::size_t mask = cap - 1;
    const std::size_t W = static_cast<std::size_t>(words);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t* k = keys + i * W;
        std::uint64_t h = 0x9e3779b97f4a7c15ULL;
        for (std::size_t w = 0; w < W; ++w) h = mix64(h ^ k[w]);
        std::size_t s = static_cast<std::size_t>(h) & mask;
        for (;;) {
            const std::int64_t u = slots[s];
            if (u < 0) {
                slots[s] = static_cast<std::int64_t>(first.size());
                inverse[i] = static_cast<std::int64_t>(first.size());
                first.push_back(static_cast<std::int64_t>(i));
                break;
            }
            const std::uint64_t* o = keys + static_cast<std::size_t>(first[static_cast<std::size_t>(u)]) * W;
            bool same = true;
            for (std::size_t w = 0; w < W; ++w) same = same && o[w] == k[w];
            if (same) {
                inverse[i] = u;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    return first.size();
}

inline std::size_t unique_keys(const std::uint64_t* keys, std::size_t n, int words, std::vector<std::int64_t>& first,
                               std::int64_t* inverse) {
    std::vector<std::int64_t> slots;
    return unique_keys(keys, n, words, first, inverse, slots);
}

}  // namespace hyperchroma
