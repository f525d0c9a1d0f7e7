// The whole lookup chain of one image in one call (python/hyperchroma/lookup.py states it and keeps the Python
// version as the reference): exact hits (hash table) -> one-step probes -> neighbor seeds + sorted index -> gray,
// the fallback once per distinct missing key. Scratch buffers are per calling thread and reused, so a call
// allocates nothing but its outputs once the buffers have grown to the image size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "hash_table.hpp"
#include "neighbor_seeds.hpp"
#include "sorted_index.hpp"
#include "unique_keys.hpp"

namespace hyperchroma {

// The per-pixel status values of hyperchroma.Status (disjoint from the table's STATUS_* codes).
constexpr std::uint8_t LOOKUP_GRAY = 8, LOOKUP_EXACT = 9, LOOKUP_NEAREST = 10;

struct ChainOptions {
    bool one_step = true;
    double max_distance = 5.0;
    std::size_t max_scan = 64;
    bool exact = false;
    int seed_radius = 1;
    int threads = 1;
};

namespace detail {
struct ChainScratch {
    std::vector<std::uint8_t> hit, found, hits1;
    std::vector<std::int64_t> miss, first, inverse, rest, rest_u, used_of, used, seed, idx;
    std::vector<std::uint64_t> mk, uk, qk;
    std::vector<float> ab1, bound, kbound, dist, kdist;
    std::vector<double> kcap;
};
inline ChainScratch& chain_scratch() {
    thread_local ChainScratch s;
    return s;
}
}  // namespace detail

// keys: H*W rows of table.layout().words (checked by the caller); outputs ab (H*W, 2), status, distance (H*W).
inline void lookup_chain(const HashTable& table, const SortedIndex& index, const std::uint64_t* keys, int H, int W,
                         const ChainOptions& opt, float* ab, std::uint8_t* status, float* distance) {
    constexpr float inf = std::numeric_limits<float>::infinity();
    const std::size_t n = static_cast<std::size_t>(H) * static_cast<std::size_t>(W);
    const KeyLayout& layout = table.layout();
    const std::size_t words = static_cast<std::size_t>(layout.words);
    auto& s = detail::chain_scratch();
    s.hit.resize(n);
    s.found.resize(n);
    table.lookup(keys, n, ab, s.hit.data(), opt.threads);
    s.miss.clear();
    for (std::size_t i = 0; i < n; ++i) {
        const bool f = s.hit[i] == STATUS_HIT;
        s.found[i] = f;
        status[i] = f ? LOOKUP_EXACT : LOOKUP_GRAY;
        distance[i] = f ? 0.0f : inf;
        if (!f) {
            s.miss.push_back(static_cast<std::int64_t>(i));
            ab[2 * i] = ab[2 * i + 1] = 0.0f;
        }
    }
    const std::size_t nm = s.miss.size();
    if (nm == 0) return;
    s.mk.resize(nm * words);
    for (std::size_t j = 0; j < nm; ++j)
        std::copy(keys + static_cast<std::size_t>(s.miss[j]) * words, keys + (static_cast<std::size_t>(s.miss[j]) + 1) * words,
                  s.mk.begin() + static_cast<std::ptrdiff_t>(j * words));
    s.inverse.resize(nm);
    const std::size_t U = unique_keys(s.mk.data(), nm, layout.words, s.first, s.inverse.data());
    s.uk.resize(U * words);
    for (std::size_t u = 0; u < U; ++u)
        std::copy(s.mk.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(s.first[u]) * words),
                  s.mk.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(s.first[u]) + 1) * words),
                  s.uk.begin() + static_cast<std::ptrdiff_t>(u * words));
    s.rest.clear();
    s.rest_u.clear();
    if (opt.one_step && opt.max_distance >= 1) {
        s.ab1.resize(2 * U);
        s.hits1.resize(U);
        table.lookup_one_step(s.uk.data(), U, s.ab1.data(), s.hits1.data(), opt.threads);
        for (std::size_t j = 0; j < nm; ++j) {
            const std::size_t p = static_cast<std::size_t>(s.miss[j]);
            const std::size_t u = static_cast<std::size_t>(s.inverse[j]);
            if (s.hits1[u] > 0) {
                ab[2 * p] = s.ab1[2 * u];
                ab[2 * p + 1] = s.ab1[2 * u + 1];
                status[p] = LOOKUP_NEAREST;
                distance[p] = 1.0f;
            } else {
                s.rest.push_back(s.miss[j]);
                s.rest_u.push_back(s.inverse[j]);
            }
        }
    } else {
        s.rest = s.miss;
        s.rest_u = s.inverse;
    }
    const std::size_t m = s.rest.size();
    if (m == 0) return;
    const bool seeded = opt.seed_radius > 0;
    if (seeded) {
        s.seed.resize(m);
        s.bound.resize(m);
        neighbor_seeds_at(keys, s.found.data(), H, W, layout, opt.seed_radius, s.rest.data(), m, s.seed.data(),
                          s.bound.data(), opt.threads);
    }
    s.idx.resize(m);
    s.dist.resize(m);
    SearchOptions so;
    so.max_distance = opt.max_distance;
    so.max_scan = opt.max_scan;
    so.threads = opt.threads;
    const double md = opt.max_distance;
    if (opt.exact) {
        // the exact search's visiting order depends on the bound: per pixel
        s.qk.resize(m * words);
        for (std::size_t j = 0; j < m; ++j)
            std::copy(keys + static_cast<std::size_t>(s.rest[j]) * words,
                      keys + (static_cast<std::size_t>(s.rest[j]) + 1) * words,
                      s.qk.begin() + static_cast<std::ptrdiff_t>(j * words));
        so.exact = true;
        so.bounds = seeded ? s.bound.data() : nullptr;
        index.search(s.qk.data(), m, so, s.idx.data(), s.dist.data());
    } else {
        // one search per distinct key with the largest cap of its pixels (NaN: max_distance); a pixel keeps the
        // entry when its distance is within the pixel's own cap (lookup.py _search_distinct states why)
        s.used_of.assign(U, -1);
        s.used.clear();
        for (std::size_t j = 0; j < m; ++j) {
            const std::size_t u = static_cast<std::size_t>(s.rest_u[j]);
            if (s.used_of[u] < 0) {
                s.used_of[u] = static_cast<std::int64_t>(s.used.size());
                s.used.push_back(static_cast<std::int64_t>(u));
            }
        }
        const std::size_t V = s.used.size();
        s.qk.resize(V * words);
        for (std::size_t v = 0; v < V; ++v)
            std::copy(s.uk.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(s.used[v]) * words),
                      s.uk.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(s.used[v]) + 1) * words),
                      s.qk.begin() + static_cast<std::ptrdiff_t>(v * words));
        auto cap_of = [&](std::size_t j) {
            const double b = static_cast<double>(s.bound[j]);
            return b < md ? b : md;  // NaN bounds: max_distance, as the search itself
        };
        s.kdist.resize(V);
        std::vector<std::int64_t>& kidx = s.first;  // reused: first is no longer needed
        kidx.resize(V);
        if (seeded) {
            s.kcap.assign(V, -std::numeric_limits<double>::infinity());
            for (std::size_t j = 0; j < m; ++j) {
                const std::size_t v = static_cast<std::size_t>(s.used_of[static_cast<std::size_t>(s.rest_u[j])]);
                s.kcap[v] = std::max(s.kcap[v], cap_of(j));
            }
            s.kbound.resize(V);
            for (std::size_t v = 0; v < V; ++v)
                s.kbound[v] = s.kcap[v] < md ? static_cast<float>(s.kcap[v]) : std::numeric_limits<float>::quiet_NaN();
            so.bounds = s.kbound.data();
        }
        index.search(s.qk.data(), V, so, kidx.data(), s.kdist.data());
        for (std::size_t j = 0; j < m; ++j) {
            const std::size_t v = static_cast<std::size_t>(s.used_of[static_cast<std::size_t>(s.rest_u[j])]);
            std::int64_t i = kidx[v];
            const float d = s.kdist[v];
            if (seeded && i >= 0) {
                const double d2 = std::nearbyint(static_cast<double>(d) * static_cast<double>(d));
                if (!(std::sqrt(d2) <= cap_of(j))) i = -1;
            }
            s.idx[j] = i;
            s.dist[j] = d;
        }
    }
    const float* iab = index.ab();
    const float mdf = static_cast<float>(md);  // numpy compares the float32 bounds with max_distance in float32
    for (std::size_t j = 0; j < m; ++j) {
        const std::size_t p = static_cast<std::size_t>(s.rest[j]);
        const std::int64_t i = s.idx[j];
        if (i >= 0) {
            ab[2 * p] = iab[2 * i];
            ab[2 * p + 1] = iab[2 * i + 1];
            distance[p] = s.dist[j];
            status[p] = LOOKUP_NEAREST;
        } else if (seeded && s.seed[j] >= 0 && s.bound[j] <= mdf) {
            const std::size_t q = static_cast<std::size_t>(s.seed[j]);
            ab[2 * p] = ab[2 * q];
            ab[2 * p + 1] = ab[2 * q + 1];
            distance[p] = s.bound[j];
            status[p] = LOOKUP_NEAREST;
        } else {
            ab[2 * p] = ab[2 * p + 1] = 0.0f;
            distance[p] = inf;
            status[p] = LOOKUP_GRAY;
        }
    }
}

}  // namespace hyperchroma
