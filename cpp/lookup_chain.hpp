// The whole lookup chain of one image in one call (python/hyperchroma/lookup.py states it and keeps the Python
// version as the reference): exact hits (hash table) -> one-step probes -> neighbor seeds + sorted index -> gray,
// the fallback once per distinct missing key. Scratch buffers are per calling thread and reused, so a call
// allocates nothing but its outputs once the buffers have grown to the image size.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "hash_table.hpp"
#include "neighbor_seeds.hpp"
#include "parallel.hpp"
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
    bool memo = true;  // recall the thread's previous call's answers for its distinct missing keys (same output)
};

namespace detail {
// What the fallback found for one distinct missing key: its one-step probes' count and mean color, and (once
// searched) the sorted index's nearest entry and distance with no bound (a pixel's own cap filters it, as for
// the bounded search: lookup.py _search_distinct).
struct MissAnswer {
    float ab1[2];
    float dist;
    std::int64_t idx;
    std::uint8_t hits1;
    bool searched;
};

// The miss memo: the answers for the distinct missing keys of the thread's previous call, with what they depend
// on (the table's and index's content ids, the options). Consecutive film frames share most of their missing
// keys (about 75% of them on vtest at 720x528), so a call looks its keys up here before probing and searching.
// Answers are the chain's own, so the output is the same with or without the memo. Its table is the call's own
// unique_keys table, taken over by swapping (unique_keys.hpp: linear probing, mix64 of the words, each slot a key's
// row + 1 under its hash's high 32 bits), so storing a call's answers hashes nothing.
inline std::atomic<std::uint64_t>& memo_epoch() {  // clear_lookup_memo() moves it on: every thread's memo is stale
    static std::atomic<std::uint64_t> epoch{0};
    return epoch;
}

struct MissMemo {
    std::uint64_t table_id = 0, index_id = 0, epoch = 0;
    double max_distance = 0;
    std::size_t max_scan = 0;
    bool one_step = false, exact = false;
    std::size_t words = 0, size = 0;
    std::vector<std::uint64_t> keys;
    std::vector<MissAnswer> answers;
    std::vector<std::int64_t> slots;  // unique_keys' table of `keys`: 0 empty, else (hash >> 32) << 32 | (row + 1)

    bool matches(const HashTable& t, const SortedIndex& ix, const ChainOptions& o) const {
        return size > 0 && epoch == memo_epoch().load(std::memory_order_relaxed) && table_id == t.content_id() &&
               index_id == ix.content_id() && max_distance == o.max_distance && max_scan == o.max_scan &&
               one_step == o.one_step && exact == o.exact && words == static_cast<std::size_t>(t.layout().words);
    }
    const MissAnswer* find(const std::uint64_t* k) const {
        const std::int64_t r = unique_keys_find(slots, keys.data(), words, k);
        return r < 0 ? nullptr : &answers[static_cast<std::size_t>(r)];
    }
    // Replace the contents by the n distinct keys (rows of words, in unique_keys' order), their answers and
    // unique_keys' table of them, taken by swapping the vectors (the caller gets the previous contents' buffers to
    // reuse, not a copy).
    void store(const HashTable& t, const SortedIndex& ix, const ChainOptions& o, std::vector<std::uint64_t>& k_in,
               std::vector<MissAnswer>& a_in, std::vector<std::int64_t>& slots_in, std::size_t n) {
        table_id = t.content_id(), index_id = ix.content_id(), epoch = memo_epoch().load(std::memory_order_relaxed);
        max_distance = o.max_distance, max_scan = o.max_scan, one_step = o.one_step, exact = o.exact;
        words = static_cast<std::size_t>(t.layout().words);
        size = n;
        keys.swap(k_in);
        answers.swap(a_in);
        slots.swap(slots_in);
    }
};

struct ChainScratch {
    std::vector<std::uint8_t> hit, found, hits1, in_memo;
    std::vector<std::int64_t> miss, first, inverse, rest, rest_u, used, todo, seed, idx, kidx, slots;
    std::vector<std::uint64_t> mk, uk, qk;
    std::vector<float> ab1, bound, dist, kdist;
    std::vector<MissAnswer> answers;
    MissMemo memo;
};
// An order-preserving compaction of [0, n) split into blocks run in parallel: count(b, e) -> how many items of
// [b, e) are kept, then write(b, e, at, end) writes them to positions [at, end) (the blocks' prefix sums), so the
// kept items come out in index order as from a serial loop. Returns how many were kept. One block below kMinItems
// items or on one thread (then it is the serial loop, plus the count pass).
struct BlockCompaction {
    static constexpr std::size_t kBlocks = 16, kMinItems = 8192;
    std::size_t at[kBlocks + 1];
    template <class Count, class Write>
    std::size_t run(std::size_t n, int threads, const Count& count, const Write& write) {
        const std::size_t nb = resolve_threads(threads) > 1 && n >= kMinItems ? kBlocks : 1;
        const auto lo = [&](std::size_t k) { return n * k / nb; };
        parallel_for_claimed(nb, threads, 1, [&](std::size_t k0, std::size_t k1) {
            for (std::size_t k = k0; k < k1; ++k) at[k + 1] = count(lo(k), lo(k + 1));
        });
        at[0] = 0;
        for (std::size_t k = 0; k < nb; ++k) at[k + 1] += at[k];
        parallel_for_claimed(nb, threads, 1, [&](std::size_t k0, std::size_t k1) {
            for (std::size_t k = k0; k < k1; ++k) write(lo(k), lo(k + 1), at[k], at[k + 1]);
        });
        return at[nb];
    }
};

// One key's words (2 for the default 56 channels): a plain copy, not a memmove call per key.
inline void copy_key(std::uint64_t* dst, const std::uint64_t* src, std::size_t words) {
    if (words == 2) {
        dst[0] = src[0];
        dst[1] = src[1];
    } else {
        for (std::size_t w = 0; w < words; ++w) dst[w] = src[w];
    }
}

// Not inlined: the caller then holds the address in a register. Inlined, every use of the thread_local in the
// chain's loops re-fetched its address through __tls_get_addr (the extension's TLS is dynamic), 2.6% of a call.
[[gnu::noinline]] inline ChainScratch& chain_scratch() {
    thread_local ChainScratch s;
    return s;
}
}  // namespace detail

// Every thread's miss memo is forgotten (its buffers kept for reuse): to time unrelated images. The output
// never depends on the memo.
inline void clear_lookup_memo() { detail::memo_epoch().fetch_add(1, std::memory_order_relaxed); }

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
    table.lookup(keys, n, ab, s.hit.data(), opt.threads);  // ab = 0 for misses and conflicts
    // without branches (hits and misses interleave at random): the miss list is compacted by its count
    s.miss.resize(n);
    std::int64_t* miss = s.miss.data();
    const std::uint8_t* hit = s.hit.data();
    std::uint8_t* found = s.found.data();
    detail::BlockCompaction compaction;
    const std::size_t nm = compaction.run(
        n, opt.threads,
        [&](std::size_t b, std::size_t e) {
            // without branches (hits and misses interleave at random); the pointers held in locals, since the
            // byte stores could alias the captured vectors' members
            const std::uint8_t* __restrict h = hit;
            std::uint8_t* __restrict fo = found;
            std::uint8_t* __restrict st = status;
            float* __restrict di = distance;
            const float miss_distance[2] = {inf, 0.0f};
            std::size_t c = 0;
            for (std::size_t i = b; i < e; ++i) {
                const std::uint8_t f = h[i] == STATUS_HIT;
                fo[i] = f;
                st[i] = static_cast<std::uint8_t>(LOOKUP_GRAY + f);  // LOOKUP_EXACT == LOOKUP_GRAY + 1
                di[i] = miss_distance[f];
                c += 1u - f;
            }
            return c;
        },
        [&](std::size_t b, std::size_t e, std::size_t at, std::size_t end) {
            // every pixel writes its index at `at`, which only a miss moves on (the next miss overwrites a found
            // pixel's write); once the block's misses are all written (at == end, the next block's first entry,
            // another thread's) the writes go to a dummy
            const std::uint8_t* __restrict fo = found;
            std::int64_t* __restrict out = miss;
            std::int64_t dummy;
            for (std::size_t i = b; i < e; ++i) {
                *(at < end ? out + at : &dummy) = static_cast<std::int64_t>(i);
                at += 1u - fo[i];
            }
        });
    s.miss.resize(nm);
    if (nm == 0) return;
    static_assert(LOOKUP_EXACT == LOOKUP_GRAY + 1, "the branch-free status write");
    s.mk.resize(nm * words);
    parallel_for(nm, opt.threads, 8192, [&](std::size_t b, std::size_t e) {
        for (std::size_t j = b; j < e; ++j)
            detail::copy_key(s.mk.data() + j * words, keys + static_cast<std::size_t>(miss[j]) * words, words);
    });
    s.inverse.resize(nm);
    const std::size_t U = unique_keys(s.mk.data(), nm, layout.words, s.first, s.inverse.data(), s.slots);
    s.uk.resize(U * words);
    parallel_for(U, opt.threads, 8192, [&](std::size_t b, std::size_t e) {
        for (std::size_t u = b; u < e; ++u)
            detail::copy_key(s.uk.data() + u * words, s.mk.data() + static_cast<std::size_t>(s.first[u]) * words,
                             words);
    });
    // Each distinct key's answer: from the memo where the previous call found it, else computed below.
    s.answers.resize(U);
    s.in_memo.assign(U, 0);
    const bool recall = opt.memo && s.memo.matches(table, index, opt);
    if (recall)
        parallel_for_claimed(U, opt.threads, 1024, [&](std::size_t b, std::size_t e) {
            for (std::size_t u = b; u < e; ++u)
                if (const detail::MissAnswer* a = s.memo.find(s.uk.data() + u * words)) {
                    s.answers[u] = *a;
                    s.in_memo[u] = 1;
                }
        });
    auto gather = [&](const std::vector<std::int64_t>& which) {  // the keys of distinct positions -> qk
        s.qk.resize(which.size() * words);
        for (std::size_t v = 0; v < which.size(); ++v)
            detail::copy_key(s.qk.data() + v * words, s.uk.data() + static_cast<std::size_t>(which[v]) * words, words);
    };
    const bool probe = opt.one_step && opt.max_distance >= 1;
    s.todo.clear();
    for (std::size_t u = 0; u < U; ++u) {
        if (!s.in_memo[u]) {
            detail::MissAnswer& a = s.answers[u];
            a.ab1[0] = a.ab1[1] = 0.0f;
            a.hits1 = 0;
            a.searched = false;
            a.idx = -1;
            a.dist = inf;
            if (probe) s.todo.push_back(static_cast<std::int64_t>(u));
        }
    }
    if (!s.todo.empty()) {
        const std::size_t T = s.todo.size();
        const bool every = T == U;  // none from the memo (unrelated images): the distinct keys themselves
        if (!every) gather(s.todo);
        s.ab1.resize(2 * T);
        s.hits1.resize(T);
        table.lookup_one_step(every ? s.uk.data() : s.qk.data(), T, s.ab1.data(), s.hits1.data(), opt.threads);
        parallel_for(T, opt.threads, 8192, [&](std::size_t b, std::size_t e) {
            for (std::size_t v = b; v < e; ++v) {
                detail::MissAnswer& a = s.answers[static_cast<std::size_t>(s.todo[v])];
                a.hits1 = s.hits1[v];
                a.ab1[0] = s.ab1[2 * v];
                a.ab1[1] = s.ab1[2 * v + 1];
            }
        });
    }
    // the pixels with one-step neighbours get their mean; the others (rest, in pixel order) go on
    s.rest.resize(nm);
    s.rest_u.resize(nm);
    const detail::MissAnswer* answers = s.answers.data();
    const std::int64_t* inverse = s.inverse.data();
    std::int64_t* rest = s.rest.data();
    std::int64_t* rest_u = s.rest_u.data();
    const std::size_t m = compaction.run(
        nm, opt.threads,
        [&](std::size_t b, std::size_t e) {
            std::size_t c = 0;
            for (std::size_t j = b; j < e; ++j) c += !(probe && answers[inverse[j]].hits1 > 0);
            return c;
        },
        [&](std::size_t b, std::size_t e, std::size_t at, std::size_t) {
            for (std::size_t j = b; j < e; ++j) {
                const std::size_t p = static_cast<std::size_t>(miss[j]);
                const detail::MissAnswer& a = answers[inverse[j]];
                if (probe && a.hits1 > 0) {
                    ab[2 * p] = a.ab1[0];
                    ab[2 * p + 1] = a.ab1[1];
                    status[p] = LOOKUP_NEAREST;
                    distance[p] = 1.0f;
                } else {
                    rest[at] = miss[j];
                    rest_u[at] = inverse[j];
                    ++at;
                }
            }
        });
    s.rest.resize(m);
    s.rest_u.resize(m);
    const bool seeded = opt.seed_radius > 0;
    if (m > 0 && seeded) {
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
    if (m > 0 && opt.exact) {
        // the exact search's visiting order depends on the bound: per pixel, never from the memo
        s.qk.resize(m * words);
        for (std::size_t j = 0; j < m; ++j)
            std::copy(keys + static_cast<std::size_t>(s.rest[j]) * words,
                      keys + (static_cast<std::size_t>(s.rest[j]) + 1) * words,
                      s.qk.begin() + static_cast<std::ptrdiff_t>(j * words));
        so.exact = true;
        so.bounds = seeded ? s.bound.data() : nullptr;
        index.search(s.qk.data(), m, so, s.idx.data(), s.dist.data());
    } else if (m > 0) {
        // One search per distinct key not answered yet, with no bound; a pixel keeps the entry when its distance
        // is within the pixel's own cap (its bound where below max_distance): the same as a search bounded by the
        // largest cap of the key's pixels (lookup.py _search_distinct states why), so answers can be kept.
        s.used.clear();
        for (std::size_t j = 0; j < m; ++j) {
            const std::size_t u = static_cast<std::size_t>(s.rest_u[j]);
            if (!s.answers[u].searched) {
                s.answers[u].searched = true;  // marks it as queued; its result is filled in below
                s.used.push_back(static_cast<std::int64_t>(u));
            }
        }
        if (!s.used.empty()) {
            gather(s.used);
            const std::size_t V = s.used.size();
            s.kidx.resize(V);
            s.kdist.resize(V);
            index.search(s.qk.data(), V, so, s.kidx.data(), s.kdist.data());
            for (std::size_t v = 0; v < V; ++v) {
                detail::MissAnswer& a = s.answers[static_cast<std::size_t>(s.used[v])];
                a.idx = s.kidx[v];
                a.dist = s.kdist[v];
            }
        }
        auto cap_of = [&](std::size_t j) {
            const double b = static_cast<double>(s.bound[j]);
            return b < md ? b : md;  // NaN bounds: max_distance, as the search itself
        };
        for (std::size_t j = 0; j < m; ++j) {
            const detail::MissAnswer& a = s.answers[static_cast<std::size_t>(s.rest_u[j])];
            std::int64_t i = a.idx;
            const float d = a.dist;
            if (seeded && i >= 0) {
                const double d2 = std::nearbyint(static_cast<double>(d) * static_cast<double>(d));
                if (!(std::sqrt(d2) <= cap_of(j))) i = -1;
            }
            s.idx[j] = i;
            s.dist[j] = d;
        }
    }
    if (opt.memo) s.memo.store(table, index, opt, s.uk, s.answers, s.slots, U);
    const float* iab = index.ab();
    const float mdf = static_cast<float>(md);  // numpy compares the float32 bounds with max_distance in float32
    // each pixel its own writes; a seed is a found pixel, whose ab no iteration writes
    parallel_for_claimed(m, opt.threads, 2048, [&](std::size_t jb, std::size_t je) {
        for (std::size_t j = jb; j < je; ++j) {
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
    });
}

}  // namespace hyperchroma
