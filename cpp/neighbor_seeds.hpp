// Spatial candidates for the nearest-key search: a pixel whose key is not in the table very often has an
// image neighbor whose key is, and adjacent pixels have close hypercolumns. For each pixel not found, the
// found pixel within a (2r+1)^2 window whose key is nearest (ties: the first in row-major order) seeds the
// sorted-index search with a distance bound, which makes the exact search cheap.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "keys.hpp"
#include "parallel.hpp"
#include "sorted_index.hpp"

namespace hyperchroma {

namespace detail {
// The seed of pixel (y, x): (nearest found neighbor's index or -1, its squared distance).
template <class Dist>
inline void seed_of(const Dist& dist, const std::uint64_t* keys, const std::uint8_t* found, int H, int W, int words,
                    int radius, int y, int x, std::int64_t* seed, float* distance) {
    const std::size_t p = static_cast<std::size_t>(y) * W + x;
    if (found[p]) {
        *seed = static_cast<std::int64_t>(p);
        *distance = 0.0f;
        return;
    }
    const std::uint64_t* q = keys + p * words;
    std::uint64_t best_sq = std::numeric_limits<std::uint64_t>::max();
    std::int64_t best = -1;
    for (int ny = std::max(0, y - radius); ny <= std::min(H - 1, y + radius); ++ny)
        for (int nx = std::max(0, x - radius); nx <= std::min(W - 1, x + radius); ++nx) {
            const std::size_t n = static_cast<std::size_t>(ny) * W + nx;
            if (!found[n]) continue;
            const std::uint64_t d = dist(keys + n * words, q, best_sq - 1);
            if (d < best_sq) {
                best_sq = d;
                best = static_cast<std::int64_t>(n);
            }
        }
    *seed = best;
    *distance = best < 0 ? std::numeric_limits<float>::infinity()
                         : static_cast<float>(std::sqrt(static_cast<double>(best_sq)));
}
}  // namespace detail

// keys: H*W rows of layout.words; found: H*W flags. Outputs per pixel: seed = pixel index of the nearest found
// neighbor (itself when found; -1 when none in the window), distance = its key distance (0; inf when none).
inline void neighbor_seeds(const std::uint64_t* keys, const std::uint8_t* found, int H, int W,
                           const KeyLayout& layout, int radius, std::int64_t* seed, float* distance, int threads = 1) {
    const int words = layout.words;
    with_distance(layout, [&](const auto& dist) {
        parallel_for(static_cast<std::size_t>(H), threads, 8, [&](std::size_t y0, std::size_t y1) {
            for (std::size_t yy = y0; yy < y1; ++yy)
                for (int x = 0; x < W; ++x) {
                    const std::size_t p = yy * static_cast<std::size_t>(W) + static_cast<std::size_t>(x);
                    detail::seed_of(dist, keys, found, H, W, words, radius, static_cast<int>(yy), x, seed + p,
                                    distance + p);
                }
        });
    });
}

// The same for the m pixels listed (indices into H*W, checked by the caller): outputs (m,), in their order.
inline void neighbor_seeds_at(const std::uint64_t* keys, const std::uint8_t* found, int H, int W,
                              const KeyLayout& layout, int radius, const std::int64_t* pixels, std::size_t m,
                              std::int64_t* seed, float* distance, int threads = 1) {
    const int words = layout.words;
    with_distance(layout, [&](const auto& dist) {
        // claimed chunks: the listed pixels cluster in parts of the image, so halves take unequal times
        parallel_for_claimed(m, threads, 256, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) {
                const int y = static_cast<int>(pixels[i] / W), x = static_cast<int>(pixels[i] % W);
                detail::seed_of(dist, keys, found, H, W, words, radius, y, x, seed + i, distance + i);
            }
        });
    });
}

}  // namespace hyperchroma
