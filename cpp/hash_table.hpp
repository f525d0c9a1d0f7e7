// Hash table from packed quantized keys (keys.hpp) to Lab ab colors, with a conflict policy.
//
// Layout (the memory bound is <= 32 bytes per entry for 2-word keys):
// - Entries live densely in insertion order, one row of (words + 1) uint64 per entry: the full key, then
//   one "meta" word = a (21-bit signed) | b (21-bit signed) << 21 | count (21 bits) << 42 | conflict << 63.
//   a and b are fixed point in 1/8192 ab units (range [-128, 128)), so every stored color is exactly a
//   float32. Rows are kept in chunks of 2^14 entries: growth never copies the whole table and leaves at most
//   one partly filled chunk of slack.
// - The slot array holds uint32 words, EMPTY = 0xFFFFFFFF. The low idx_bits (enough for the slot capacity)
//   are the entry index, the remaining high bits a tag taken from the key's hash, so most non-matching
//   probes (and nearly all probes of a miss) are rejected without touching the entry row. The capacity is
//   not a power of two: bucket = high 32 hash bits * capacity >> 32. Linear probing, load <= 0.8, grows by
//   1.5x. Slots cost 5 to 7.5 bytes per entry.
// - A presence filter (one uint64 per 8 slots, 3 bits set per key in the word of its home bucket, 10 to 15
//   bits per entry, rebuilt with the slots) lets lookup_one_step reject most of its ~2 * channels probes of
//   absent keys without touching the slot array (~2-3% false positives at load 0.8).
// - While fitting, every policy keeps what makes its result a function of the *set* of inserted colors,
//   not of their order, so tables fitted on parts of the data merge exactly (merge()):
//   mean / mark: per entry the exact color sums and count (Acc, 24 bytes), mark also the per-axis extremes
//   (Ext, 16 bytes), in vectors parallel to the rows; vote: exact per-(entry, color bin) counts and color
//   sums in an auxiliary open-addressing map (32 bytes per record, bucket from the entry key's hash and the
//   bin, so it can be prefetched before the entry is found). finalize() drops all of it: a finalized table
//   is rows + slots + filter only (<= 32 bytes per entry for 2-word keys).
//
// Policies (sums and counts exact integers, q = the stored color in fixed point, n = the number of colors):
// - mean: q = round(sum / n), the exact mean.
// - mark: the mean, and the entry is marked conflicting for good when the bounding box of its colors is
//   wider than tolerance (Euclidean diagonal, ab units: for two colors, their distance); lookup reports it
//   as STATUS_CONFLICT.
// - vote: bin = floor(ab / vote_bin) per axis. The stored color is the mean of the colors in the entry's
//   most frequent bin; a tie goes to the smaller bin (bin of a first, then of b).
// The stored count is n saturated at kCountMax. An entry without fitting data (after finalize() or
// from_entries()) is reseeded when the table is next inserted into or merged: as `count` colors equal to
// its stored color (mean / mark: sums = q * count, extremes = q; vote: `count` votes for the bin of q), so
// fitting on after finalize() is an approximation; fit, merge, then finalize() is exact.
// Order: entries keep first-insertion order; merge(o) appends o's new keys after this table's in o's
// order, so merging consecutive parts in order reproduces the single-table order as well.
// round(v) is round half up, in exact integer arithmetic.
//
// Thread safety: lookups (and all const readers) take a shared lock, inserts and other mutators an
// exclusive one, so concurrent lookups are safe, also while another thread inserts.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "keys.hpp"
#include "neighbor_index.hpp"
#include "parallel.hpp"
#include "simd.hpp"

// The one-step filter test has an AVX2 path (intrinsics in a target("avx2") function, picked at run time);
// off where the clones are off (sanitizer builds test the portable loop), and off the compilers that lack it.
#if !defined(HYPERCHROMA_NO_CLONES) && !defined(HYPERCHROMA_NO_CLONES_) && defined(__x86_64__) && \
    (defined(__GNUC__) || defined(__clang__))
#define HYPERCHROMA_ONE_STEP_AVX2 1
#include <immintrin.h>
#else
#define HYPERCHROMA_ONE_STEP_AVX2 0
#endif

namespace hyperchroma {

enum class Policy { mark, mean, vote };

inline Policy parse_policy(const std::string& name) {
    if (name == "mark") return Policy::mark;
    if (name == "mean") return Policy::mean;
    if (name == "vote") return Policy::vote;
    throw std::invalid_argument("policy must be one of 'mark', 'mean', 'vote', got '" + name + "'");
}

inline const char* policy_name(Policy p) {
    switch (p) {
        case Policy::mark: return "mark";
        case Policy::mean: return "mean";
        case Policy::vote: return "vote";
    }
    return "?";
}

constexpr std::uint8_t STATUS_MISS = 0, STATUS_HIT = 1, STATUS_CONFLICT = 2;

// The table's hash of a packed key: simple tabulation by channel, h = XOR over channels c of T[c][level of c]
// (T: random 64-bit words, mix64 of the channel and level). It is linear in XOR, so the hash of the key with one
// channel's level changed from l to l' is h ^ T[c][l] ^ T[c][l'], one load from D (below): the one-step probes
// (~2 * channels per key) need no rehashing. A whole key is hashed byte by byte through TB (the XOR of the T
// words of the fields a byte holds) when fields do not straddle bytes (bits 1, 2, 4, 8), else channel by
// channel. Simple tabulation gives linear probing constant expected probe lengths for any key set (Patrascu and
// Thorup 2011). One shared, never freed instance per (channels, levels).
struct Tabulation {
    int bits = 1, fields_per_word = 64, words = 1, channels = 1;
    bool by_bytes = false;
    std::vector<std::uint64_t> T;   // channels x 2^bits
    std::vector<std::uint64_t> TB;  // words * 8 x 256, when by_bytes
    std::vector<std::uint64_t> D;   // channels x 2^bits x 2: T[c][v] ^ T[c][v - 1], T[c][v] ^ T[c][v + 1] (0 off the range)

    explicit Tabulation(const KeyLayout& L)
        : bits(L.bits), fields_per_word(L.fields_per_word), words(L.words), channels(L.channels),
          by_bytes(8 % L.bits == 0) {
        const std::size_t nv = std::size_t{1} << bits;
        T.resize(static_cast<std::size_t>(channels) * nv);
        for (std::size_t i = 0; i < T.size(); ++i) T[i] = mix64(0x2545f4914f6cdd1dULL + (i + 1) * 0x9e3779b97f4a7c15ULL);
        D.assign(T.size() * 2, 0);
        for (std::size_t c = 0; c < static_cast<std::size_t>(channels); ++c)
            for (std::size_t v = 0; v < nv; ++v) {
                const std::uint64_t t = T[c * nv + v];
                if (v >= 1) D[(c * nv + v) * 2] = t ^ T[c * nv + v - 1];
                if (v + 1 < nv) D[(c * nv + v) * 2 + 1] = t ^ T[c * nv + v + 1];
            }
        if (!by_bytes) return;
        TB.assign(static_cast<std::size_t>(words) * 8 * 256, 0);
        const int per_byte = 8 / bits;
        const std::uint64_t fmask = nv - 1;
        for (int w = 0; w < words; ++w)
            for (int p = 0; p < 8; ++p)
                for (std::uint64_t byte = 0; byte < 256; ++byte) {
                    std::uint64_t h = 0;
                    for (int f = 0; f < per_byte; ++f) {
                        const int c = w * fields_per_word + p * per_byte + f;
                        const std::uint64_t v = (byte >> (f * bits)) & fmask;
                        if (p * per_byte + f < fields_per_word && c < channels) h ^= T[static_cast<std::size_t>(c) * nv + v];
                        else if (v) h ^= mix64(~byte);  // stray bits of an invalid key: any fixed value (0 for 0)
                    }
                    TB[(static_cast<std::size_t>(w) * 8 + static_cast<std::size_t>(p)) * 256 + byte] = h;
                }
    }

    std::uint64_t hash(const std::uint64_t* key) const {
        std::uint64_t h = 0;
        if (by_bytes) {
            const std::uint64_t* t = TB.data();
            for (int w = 0; w < words; ++w, t += 8 * 256) {  // all 8 bytes (a zero byte past the fields adds 0)
                const std::uint64_t x = key[w];
                std::uint64_t h0 = t[x & 255] ^ t[256 + ((x >> 8) & 255)];
                std::uint64_t h1 = t[512 + ((x >> 16) & 255)] ^ t[768 + ((x >> 24) & 255)];
                h0 ^= t[1024 + ((x >> 32) & 255)] ^ t[1280 + ((x >> 40) & 255)];
                h1 ^= t[1536 + ((x >> 48) & 255)] ^ t[1792 + (x >> 56)];
                h ^= h0 ^ h1;
            }
            return h;
        }
        const std::uint64_t fmask = (std::uint64_t{1} << bits) - 1;
        for (int c = 0; c < channels; ++c) {
            const int w = c / fields_per_word, sh = (c % fields_per_word) * bits;
            h ^= T[(static_cast<std::size_t>(c) << bits) + ((key[w] >> sh) & fmask)];
        }
        return h;
    }

    static const Tabulation& of(const KeyLayout& L) {
        static std::mutex m;
        static std::vector<std::unique_ptr<Tabulation>> all;
        std::lock_guard<std::mutex> lock(m);
        for (const auto& t : all)
            if (t->channels == L.channels && t->bits == L.bits) return *t;
        all.push_back(std::make_unique<Tabulation>(L));
        return *all.back();
    }
};

class HashTable {
public:
    static constexpr double kAbScale = 8192.0;                       // fixed-point units per ab unit
    static constexpr std::int64_t kAbMin = -(std::int64_t{1} << 20);  // -128 ab
    static constexpr std::int64_t kAbMax = (std::int64_t{1} << 20) - 1;
    static constexpr std::uint32_t kCountMax = (1u << 21) - 1;        // counts saturate here
    static constexpr std::size_t kMaxEntries = std::size_t{1} << 31;
    static constexpr double kVoteBinMin = 0.01, kVoteBinMax = 256.0;

    HashTable(int channels, int levels, Policy policy = Policy::mean, double tolerance = 12.0,
              std::size_t capacity = 0, double vote_bin = 10.0)
        : layout_(channels, levels), words_(layout_.words), stride_(static_cast<std::size_t>(layout_.words) + 1),
          policy_(policy), tolerance_(tolerance), vote_bin_(vote_bin), tab_(&Tabulation::of(layout_)) {
        if (!(std::isfinite(tolerance) && tolerance >= 0.0))
            throw std::invalid_argument("tolerance must be a finite number >= 0 (ab units), got " +
                                        std::to_string(tolerance));
        if (!(std::isfinite(vote_bin) && vote_bin >= kVoteBinMin && vote_bin <= kVoteBinMax))
            throw std::invalid_argument("vote_bin must be in [0.01, 256] (ab units), got " + std::to_string(vote_bin));
        const double t = tolerance * kAbScale;
        tol2_ = t * t;
        reserve(capacity);
    }
    HashTable(const HashTable&) = delete;
    HashTable& operator=(const HashTable&) = delete;

    // ------------------------------------------------------------------------------------------- readers
    const KeyLayout& layout() const { return layout_; }
    int words() const { return words_; }
    Policy policy() const { return policy_; }
    double tolerance() const { return tolerance_; }
    double vote_bin() const { return vote_bin_; }
    // The id of the current contents (keys.hpp next_content_id): changes with every insert, merge, finalize,
    // reserve and shrink_to_fit.
    std::uint64_t content_id() const { return content_id_.load(std::memory_order_relaxed); }

    std::size_t size() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return size_;
    }

    // Bytes actually allocated (vector capacities), the auxiliary vote map included.
    std::size_t memory_bytes() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        std::size_t b = sizeof(*this);
        b += chunks_.capacity() * sizeof(chunks_[0]) + chunk_ptr_.capacity() * sizeof(chunk_ptr_[0]);
        for (const auto& c : chunks_) b += c.capacity() * sizeof(std::uint64_t);
        b += slots_.capacity() * sizeof(std::uint32_t);
        b += filter_.capacity() * sizeof(std::uint64_t);
        b += vote_.capacity() * sizeof(VoteBin);
        b += acc_.capacity() * sizeof(Acc) + ext_.capacity() * sizeof(Ext);
        std::lock_guard<std::mutex> g(neighbors_mutex_);
        if (neighbors_) b += neighbors_->memory_bytes();
        return b;
    }

    // ab (n,2) and status (n,) for n keys (n, words). Misses and conflicting entries get ab = 0.
    void lookup(const std::uint64_t* keys, std::size_t n, float* ab, std::uint8_t* status, int threads) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        if (size_ == 0) {
            std::fill(ab, ab + 2 * n, 0.0f);
            std::fill(status, status + n, STATUS_MISS);
            return;
        }
        parallel_for(n, threads, std::size_t{1} << 14,
                     [&](std::size_t b, std::size_t e) { lookup_range(keys, b, e, ab, status); });
    }

    // For each of n keys, the usable entries one quantization step away (one channel's level +-1, L2
    // distance 1: the nearest a missing key can have): ab = their mean color, hits = how many (<= 255).
    // The key itself is not probed. Per key: all probe hashes at once (the key's tabulation hash with one
    // channel's term swapped: one XOR each, see Tabulation), then the presence filter (filter_) rejects most
    // probes before the slot array is touched (AVX2 where the CPU has it, the slots scanned 8 at a time); keys
    // go through a 4-stage pipeline (one_step_range) so filter words, slots and rows are prefetched a key or
    // two before they are read. The sums are exact integers, so the result does not
    // depend on the probe order or on threads.
    // With `indexed` (the default) and at most NeighborIndex::kMaxEntries entries, the neighbours come from the
    // table's NeighborIndex instead (built on the first such call after a change of contents, see
    // neighbor_index.hpp): the same entries, so the same result, from 8 slot scans a key instead of the probes.
    void lookup_one_step(const std::uint64_t* keys, std::size_t n, float* ab, std::uint8_t* hits, int threads,
                         bool indexed = true) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        if (size_ == 0 || cap_ == 0) {
            std::fill(ab, ab + 2 * n, 0.0f);
            std::fill(hits, hits + n, std::uint8_t{0});
            return;
        }
        if (indexed && size_ <= NeighborIndex::kMaxEntries) {
            const std::shared_ptr<const NeighborIndex> ix = neighbor_index(threads);
            parallel_for_claimed(n, threads, 512,
                                 [&](std::size_t b, std::size_t e) { one_step_indexed(*ix, keys, b, e, ab, hits); });
            return;
        }
        parallel_for_claimed(n, threads, 512, [&](std::size_t b, std::size_t e) { one_step_range(keys, b, e, ab, hits); });
    }

    // Copy the first min(n, size) entries in insertion order; returns how many were copied.
    std::size_t export_entries(std::size_t n, std::uint64_t* keys, float* ab, std::uint32_t* counts,
                               bool* conflicting) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        n = std::min(n, size_);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t* r = row(i);
            if (keys) std::copy(r, r + words_, keys + i * words_);
            const std::uint64_t m = r[words_];
            if (ab) {
                ab[2 * i] = static_cast<float>(meta_a(m)) / static_cast<float>(kAbScale);
                ab[2 * i + 1] = static_cast<float>(meta_b(m)) / static_cast<float>(kAbScale);
            }
            if (counts) counts[i] = meta_count(m);
            if (conflicting) conflicting[i] = meta_conflict(m);
        }
        return n;
    }

    // ------------------------------------------------------------------------------------------- writers
    // Insert a batch of n (key, ab) pairs in order. All ab are checked first (finite, else
    // std::invalid_argument and nothing is inserted); ab outside [-128, 128) is clamped.
    void insert(const std::uint64_t* keys, const float* ab, std::size_t n) {
        check_finite(ab, 2 * n, "ab");
        std::unique_lock<std::shared_mutex> lock(mutex_);
        changed();
        if (n) ensure_acc();
        // Pipeline over the batch: at i hash key i and prefetch its slot; for 'vote' also at i - DB prefetch
        // the candidate entry row and the bin record of the incoming color, and at i - DC the bin record of
        // the stored color; at i - DD insert. Prefetches are hints: stale ones are harmless. (Measured: a
        // row prefetch stage slows 'mean' / 'mark' down, the out-of-order core overlaps those loads anyway.)
        constexpr std::size_t R = 16, DB = 6, DC = 10, DD = 14;
        const bool vote = policy_ == Policy::vote;
        std::uint64_t ring[R];
        for (std::size_t i = 0; i < n + DD; ++i) {
            if (i < n) {
                const std::uint64_t h = hash(keys + i * words_);
                ring[i % R] = h;
                if (cap_) HYPERCHROMA_PREFETCH(&slots_[bucket(h)]);
            }
            if (vote && cap_ && i >= DB && i - DB < n) {
                const std::size_t j = i - DB;
                const std::uint64_t h = ring[j % R];
                const std::uint32_t idx = candidate(h);
                if (idx != kEmpty) {
                    const std::uint64_t* r = row(idx);
                    HYPERCHROMA_PREFETCH(r);
                    HYPERCHROMA_PREFETCH(r + words_);
                }
                // Known also for a new key: the bucket depends on the key's hash, not its entry index.
                const std::uint32_t bins = bins_of(quantize(ab[2 * j]), quantize(ab[2 * j + 1]));
                const VoteBin* v = vote_home(vote_hash(static_cast<std::uint32_t>(h), bins));
                if (v) {
                    HYPERCHROMA_PREFETCH(v);
                    HYPERCHROMA_PREFETCH(v + 1);
                }
            }
            if (vote && cap_ && i >= DC && i - DC < n) {
                const std::uint64_t h = ring[(i - DC) % R];
                const std::uint32_t idx = candidate(h);
                if (idx != kEmpty) {
                    const std::uint64_t m = row(idx)[words_];
                    const std::uint32_t bins = bins_of(meta_a(m), meta_b(m));
                    const VoteBin* v = vote_home(vote_hash(static_cast<std::uint32_t>(h), bins));
                    if (v) {
                        HYPERCHROMA_PREFETCH(v);
                        HYPERCHROMA_PREFETCH(v + 1);
                    }
                }
            }
            if (i >= DD) {
                const std::size_t j = i - DD;
                insert_one(keys + j * words_, ring[j % R], quantize(ab[2 * j]), quantize(ab[2 * j + 1]));
            }
        }
    }

    // Make room for `capacity` entries without rehashing (slots and rows).
    void reserve(std::size_t capacity) {
        if (capacity > kMaxEntries)
            throw std::length_error("capacity must be <= " + std::to_string(kMaxEntries) + ", got " +
                                    std::to_string(capacity));
        std::unique_lock<std::shared_mutex> lock(mutex_);
        changed();
        if (capacity == 0) return;
        if (cap_for(capacity) > cap_) rehash(cap_for(capacity));
        const std::size_t nchunks = (capacity + kChunkEntries - 1) >> kChunkShift;
        chunks_.reserve(nchunks);
        chunk_ptr_.reserve(nchunks);
        while (chunks_.size() < nchunks) {
            chunks_.emplace_back();
            chunk_ptr_.push_back(nullptr);
        }
        for (std::size_t k = 0; k < nchunks; ++k) {
            const std::size_t want = std::min(kChunkEntries, capacity - (k << kChunkShift)) * stride_;
            if (chunks_[k].capacity() < want) {
                chunks_[k].reserve(want);
                chunk_ptr_[k] = chunks_[k].data();
            }
        }
    }

    // Trim all allocations to the current size (slots to load 0.8). Keeps the vote data.
    void shrink_to_fit() {
        std::unique_lock<std::shared_mutex> lock(mutex_);
        changed();
        acc_.shrink_to_fit();
        ext_.shrink_to_fit();
        const std::size_t nchunks = (size_ + kChunkEntries - 1) >> kChunkShift;
        chunks_.resize(nchunks);
        chunk_ptr_.resize(nchunks);
        chunks_.shrink_to_fit();
        chunk_ptr_.shrink_to_fit();
        for (std::size_t k = 0; k < nchunks; ++k) {
            chunks_[k].shrink_to_fit();
            chunk_ptr_[k] = chunks_[k].data();
        }
        if (size_ == 0) {
            std::vector<std::uint32_t>().swap(slots_);
            std::vector<std::uint64_t>().swap(filter_);
            set_capacity(0);
        } else if (cap_for(size_) < cap_) {
            rehash(cap_for(size_));
        }
        if (vote_size_ == 0) {
            std::vector<VoteBin>().swap(vote_);
        } else {
            std::size_t c = 16;
            while (c / 4 * 3 < vote_size_) c *= 2;
            if (c < vote_.size()) vote_rehash(c);
        }
    }

    // Drop the fitting-only data (sums, counts, extremes, vote bins); later inserts and merges reseed entries.
    void finalize() {
        std::unique_lock<std::shared_mutex> lock(mutex_);
        changed();
        std::vector<VoteBin>().swap(vote_);
        vote_size_ = 0;
        std::vector<Acc>().swap(acc_);
        std::vector<Ext>().swap(ext_);
        acc_ready_ = bins_complete_ = size_ == 0;
    }

    // True while the table holds the exact fitting data of every entry (a table never finalized, built by
    // from_state() with it, or reseeded): then merge() and finalize() give exactly the table fitted on all
    // the colors at once.
    bool exact() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return policy_ == Policy::vote ? bins_complete_ : acc_ready_;
    }

    // Add every color fitted into `o` (same layout, policy, tolerance and vote bin) as if it had been
    // inserted here: associative and commutative in the stored colors, counts and flags (exact when both
    // tables are exact()); o's new keys are appended in o's order. o is not changed.
    void merge(const HashTable& o) {
        if (&o == this) throw std::invalid_argument("cannot merge a table into itself");
        if (o.layout_.channels != layout_.channels || o.layout_.levels != layout_.levels)
            throw std::invalid_argument("merge: tables differ in channels or levels (" +
                                        std::to_string(layout_.channels) + "x" + std::to_string(layout_.levels) +
                                        " vs " + std::to_string(o.layout_.channels) + "x" +
                                        std::to_string(o.layout_.levels) + ")");
        if (o.policy_ != policy_)
            throw std::invalid_argument(std::string("merge: tables differ in policy ('") + policy_name(policy_) +
                                        "' vs '" + policy_name(o.policy_) + "')");
        if (policy_ == Policy::mark && o.tolerance_ != tolerance_)
            throw std::invalid_argument("merge: tables differ in tolerance");
        if (policy_ == Policy::vote && o.vote_bin_ != vote_bin_)
            throw std::invalid_argument("merge: tables differ in vote_bin");
        std::unique_lock<std::shared_mutex> mine(mutex_, std::defer_lock);
        std::shared_lock<std::shared_mutex> theirs(o.mutex_, std::defer_lock);
        std::lock(mine, theirs);
        changed();
        if (o.size_ == 0) return;
        if (policy_ == Policy::vote)
            merge_vote(o);
        else
            merge_acc(o);
    }

    // Everything a table holds, fitting data included (for pickling and shipping partial tables).
    struct State {
        std::vector<std::uint64_t> keys, meta;           // n * words, n
        std::vector<std::int64_t> acc_sums;              // n * 2 (mean / mark, when exact)
        std::vector<std::uint64_t> acc_counts;           // n
        std::vector<std::int32_t> ext;                   // n * 4 (mark: min a, max a, min b, max b)
        std::vector<std::uint64_t> vote_keys;            // m: entry << 32 | bins
        std::vector<std::uint32_t> vote_counts;          // m
        std::vector<std::int64_t> vote_sums;             // m * 2
        bool acc_ready = false, bins_complete = false;
    };
    State state() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        State s;
        s.keys.resize(size_ * words_);
        s.meta.resize(size_);
        for (std::size_t i = 0; i < size_; ++i) {
            const std::uint64_t* r = row(i);
            std::copy(r, r + words_, s.keys.data() + i * words_);
            s.meta[i] = r[words_];
        }
        s.acc_ready = acc_ready_ && policy_ != Policy::vote;
        if (s.acc_ready) {
            s.acc_sums.resize(2 * size_);
            s.acc_counts.resize(size_);
            for (std::size_t i = 0; i < size_; ++i) {
                s.acc_sums[2 * i] = acc_[i].sum_a;
                s.acc_sums[2 * i + 1] = acc_[i].sum_b;
                s.acc_counts[i] = acc_[i].n;
            }
            if (policy_ == Policy::mark) {
                s.ext.resize(4 * size_);
                for (std::size_t i = 0; i < size_; ++i) {
                    const Ext& e = ext_[i];
                    s.ext[4 * i] = e.min_a, s.ext[4 * i + 1] = e.max_a;
                    s.ext[4 * i + 2] = e.min_b, s.ext[4 * i + 3] = e.max_b;
                }
            }
        }
        s.bins_complete = bins_complete_ && policy_ == Policy::vote;
        for (const VoteBin& v : vote_) {
            if (v.key == kNoBin) continue;
            s.vote_keys.push_back(v.key);
            s.vote_counts.push_back(v.count);
            s.vote_sums.push_back(v.sum_a);
            s.vote_sums.push_back(v.sum_b);
        }
        return s;
    }

    // The table of a State (as state() returns it). Throws std::invalid_argument on inconsistent data.
    static std::unique_ptr<HashTable> from_state(int channels, int levels, Policy policy, double tolerance,
                                                 double vote_bin, const State& s) {
        auto t = std::make_unique<HashTable>(channels, levels, policy, tolerance, 0, vote_bin);
        const std::size_t w = static_cast<std::size_t>(t->words_), n = s.meta.size();
        if (s.keys.size() != n * w) throw std::invalid_argument("state: keys and meta disagree on the size");
        if (n > kMaxEntries) throw std::invalid_argument("state: too many entries");
        const bool acc = s.acc_ready && policy != Policy::vote;
        if (acc && (s.acc_sums.size() != 2 * n || s.acc_counts.size() != n ||
                    s.ext.size() != (policy == Policy::mark ? 4 * n : 0)))
            throw std::invalid_argument("state: fitting data of the wrong size");
        const std::size_t m = s.vote_keys.size();
        if (s.vote_counts.size() != m || s.vote_sums.size() != 2 * m || (policy != Policy::vote && m))
            throw std::invalid_argument("state: vote records of the wrong size or policy");
        t->reserve(n);
        std::unique_lock<std::shared_mutex> lock(t->mutex_);
        std::vector<std::uint32_t> h32(n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t* key = s.keys.data() + i * w;
            if (meta_count(s.meta[i]) == 0) throw std::invalid_argument("state: an entry with count 0");
            if (acc && s.acc_counts[i] == 0) throw std::invalid_argument("state: an entry with no colors");
            const std::uint64_t h = t->hash(key);
            h32[i] = static_cast<std::uint32_t>(h);
            std::uint64_t pos = 0;
            if (t->find(key, h, &pos) != kEmpty) throw std::invalid_argument("state: duplicate keys");
            t->add_entry(key, h, pos, s.meta[i]);
        }
        if (acc) {
            t->acc_.resize(n);
            for (std::size_t i = 0; i < n; ++i)
                t->acc_[i] = Acc{s.acc_sums[2 * i], s.acc_sums[2 * i + 1], s.acc_counts[i]};
            if (policy == Policy::mark) {
                t->ext_.resize(n);
                for (std::size_t i = 0; i < n; ++i)
                    t->ext_[i] = Ext{s.ext[4 * i], s.ext[4 * i + 1], s.ext[4 * i + 2], s.ext[4 * i + 3]};
            }
        }
        t->acc_ready_ = acc || n == 0;
        for (std::size_t j = 0; j < m; ++j) {
            const std::uint64_t e = s.vote_keys[j] >> 32;
            if (e >= n || s.vote_counts[j] == 0) throw std::invalid_argument("state: a bad vote record");
            bool inserted = false;
            VoteBin* r = t->vote_get(s.vote_keys[j], h32[e], &inserted);
            if (!inserted) throw std::invalid_argument("state: duplicate vote records");
            r->count = s.vote_counts[j];
            r->sum_a = s.vote_sums[2 * j];
            r->sum_b = s.vote_sums[2 * j + 1];
        }
        t->bins_complete_ = (s.bins_complete && policy == Policy::vote) || n == 0;
        return t;
    }

    // Number of auxiliary vote records ((entry, bin) pairs) currently held.
    std::size_t vote_records() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return vote_size_;
    }

    // A table from saved entries (insertion order kept). Duplicate keys, counts of 0 or non-finite ab throw
    // std::invalid_argument; counts above kCountMax saturate; ab is clamped and quantized like insert().
    static std::unique_ptr<HashTable> from_entries(int channels, int levels, Policy policy, double tolerance,
                                                   double vote_bin, const std::uint64_t* keys, const float* ab,
                                                   const std::uint32_t* counts, const bool* conflicting,
                                                   std::size_t n) {
        check_finite(ab, 2 * n, "ab");
        for (std::size_t i = 0; i < n; ++i)
            if (counts[i] == 0)
                throw std::invalid_argument("counts must be >= 1, got 0 at row " + std::to_string(i));
        auto t = std::make_unique<HashTable>(channels, levels, policy, tolerance, n, vote_bin);
        std::unique_lock<std::shared_mutex> lock(t->mutex_);
        const int w = t->words_;
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t* key = keys + i * w;
            const std::uint64_t h = t->hash(key);
            std::uint64_t pos = 0;
            const std::uint32_t found = t->find(key, h, &pos);
            if (found != kEmpty)
                throw std::invalid_argument("duplicate key: rows " + std::to_string(found) + " and " +
                                            std::to_string(i) + " are equal");
            const std::uint32_t c = std::min(counts[i], kCountMax);
            const std::uint32_t idx =
                t->append_row(key, pack_meta(quantize(ab[2 * i]), quantize(ab[2 * i + 1]), c, conflicting[i]));
            t->slots_[pos] = (static_cast<std::uint32_t>(h) & t->tag_mask_) | idx;
            t->filter_add(h);
        }
        t->acc_ready_ = t->bins_complete_ = n == 0;
        return t;
    }

    static std::int64_t quantize(float x) {
        double v = static_cast<double>(x) * kAbScale;
        v = std::min(std::max(v, static_cast<double>(kAbMin)), static_cast<double>(kAbMax));
        return floor_i64(v + 0.5);
    }

    // floor(v) for |v| < 2^62, exact (std::floor is a libm call without SSE4.1).
    static std::int64_t floor_i64(double v) {
        const std::int64_t t = static_cast<std::int64_t>(v);  // truncates toward zero
        return t - (static_cast<double>(t) > v);
    }

private:
    std::atomic<std::uint64_t> content_id_{next_content_id()};
    // The one-step neighbour index of the current contents, or null until a one-step lookup builds it (every
    // mutator drops it in changed()).
    mutable std::mutex neighbors_mutex_;
    mutable std::shared_ptr<const NeighborIndex> neighbors_;

    // Every mutator calls this holding the exclusive lock: a new content id (the miss memo's answers go stale)
    // and no neighbour index (it is rebuilt by the next one-step lookup). A reader that read the old id before the lock was taken keeps answers under
    // the old id, which never matches again; one reading the new id meets the new contents.
    void changed() {
        content_id_.store(next_content_id(), std::memory_order_relaxed);
        std::lock_guard<std::mutex> g(neighbors_mutex_);
        neighbors_.reset();
    }
    // The neighbour index of the current contents (the caller holds the shared lock: no mutator runs meanwhile).
    std::shared_ptr<const NeighborIndex> neighbor_index(int threads) const {
        std::lock_guard<std::mutex> g(neighbors_mutex_);
        if (!neighbors_)
            neighbors_ = std::make_shared<const NeighborIndex>(
                layout_, size_, [this](std::size_t i) { return row(i); }, threads);
        return neighbors_;
    }
    // A key's one-step result from its neighbours' meta words: the mean color of the usable (not conflicting)
    // ones, exact integer sums divided once; their count clipped to 255.
    struct OneStepSum {
        std::int64_t sa = 0, sb = 0;
        int found = 0;
        void add(std::uint64_t meta) {
            if (meta_conflict(meta)) return;
            sa += meta_a(meta);
            sb += meta_b(meta);
            ++found;
        }
        void write(float* ab, std::uint8_t* hits) const {
            *hits = static_cast<std::uint8_t>(std::min(found, 255));
            ab[0] = found ? static_cast<float>(static_cast<double>(sa) / found / kAbScale) : 0.0f;
            ab[1] = found ? static_cast<float>(static_cast<double>(sb) / found / kAbScale) : 0.0f;
        }
    };
    // Keys in flight through the index's stages: stage b runs kNeighborLagB keys behind stage a, stage c
    // kNeighborLagC behind it, so each stage's reads were prefetched a few keys earlier.
    static constexpr std::size_t kNeighborLagB = 3, kNeighborLagC = 6, kNeighborRing = 8;
    static NeighborIndex::Query* neighbor_queries() {
        thread_local NeighborIndex::Query q[kNeighborRing];
        return q;
    }
    // lookup_one_step of keys [b, e) through the neighbour index: one_step_probe's sums over the same entries,
    // the keys through the index's three stages as a pipeline (key i in stage a, i - kNeighborLagB in b, ...).
    void one_step_indexed(const NeighborIndex& ix, const std::uint64_t* keys, std::size_t b, std::size_t e,
                          float* ab, std::uint8_t* hits) const {
        constexpr std::size_t R = kNeighborRing;
        const auto rows = [this](std::size_t i) { return row(i); };
        NeighborIndex::Query* q = neighbor_queries();  // this thread's, kept (one TLS access a call)
        for (std::size_t i = b; i < e + kNeighborLagC; ++i) {
            if (i < e) ix.stage_a(keys + i * words_, q[i % R]);
            if (i >= b + kNeighborLagB && i - kNeighborLagB < e) ix.stage_b(q[(i - kNeighborLagB) % R], rows);
            if (i < b + kNeighborLagC) continue;
            const std::size_t j = i - kNeighborLagC;
            OneStepSum sum;
            ix.stage_c(keys + j * words_, q[j % R], rows, [&](std::uint32_t k) { sum.add(row(k)[words_]); });
            sum.write(ab + 2 * j, hits + j);
        }
    }
    static constexpr std::uint32_t kEmpty = 0xFFFFFFFFu;

    std::uint64_t hash(const std::uint64_t* key) const { return tab_->hash(key); }
    static constexpr int kChunkShift = 14;
    static constexpr std::size_t kChunkEntries = std::size_t{1} << kChunkShift, kChunkMask = kChunkEntries - 1;
    static constexpr std::uint64_t kM21 = (std::uint64_t{1} << 21) - 1;

    struct Acc {  // mean / mark: exact color sums and count of an entry
        std::int64_t sum_a, sum_b;
        std::uint64_t n;
    };
    struct Ext {  // mark: the per-axis extremes of an entry's colors
        std::int32_t min_a, max_a, min_b, max_b;
    };
    struct VoteBin {
        std::uint64_t key;  // entry index << 32 | bin_a << 16 | bin_b (bins offset by 32768); kNoBin = empty
        std::uint32_t count;
        std::uint32_t h32;  // low 32 bits of the entry key's hash: the bucket is vote_hash(h32, bins), so it
                            // is known before the entry index (prefetch), and rehashing needs no entry rows
        std::int64_t sum_a, sum_b;
    };
    static constexpr std::uint64_t kNoBin = ~std::uint64_t{0};

    // ---- meta word
    static std::uint64_t pack_meta(std::int64_t a, std::int64_t b, std::uint32_t count, bool conflict) {
        return (static_cast<std::uint64_t>(a) & kM21) | ((static_cast<std::uint64_t>(b) & kM21) << 21) |
               (static_cast<std::uint64_t>(count) << 42) | (static_cast<std::uint64_t>(conflict) << 63);
    }
    static std::int64_t sext21(std::uint64_t v) {
        const std::int64_t x = static_cast<std::int64_t>(v & kM21);
        return x >= (std::int64_t{1} << 20) ? x - (std::int64_t{1} << 21) : x;
    }
    static std::int64_t meta_a(std::uint64_t m) { return sext21(m); }
    static std::int64_t meta_b(std::uint64_t m) { return sext21(m >> 21); }
    static std::uint32_t meta_count(std::uint64_t m) { return static_cast<std::uint32_t>((m >> 42) & kM21); }
    static bool meta_conflict(std::uint64_t m) { return (m >> 63) != 0; }

    // round(num / den) half up, den > 0, exact.
    static std::int64_t round_div(std::int64_t num, std::int64_t den) {
        const std::int64_t n2 = 2 * num + den, d2 = 2 * den;
        std::int64_t q = n2 / d2;
        if (n2 % d2 < 0) --q;
        return q;
    }

    static void check_finite(const float* v, std::size_t n, const char* what) {
        for (std::size_t i = 0; i < n; ++i)
            if (!std::isfinite(v[i]))
                throw std::invalid_argument(std::string(what) + " must be finite, got " + std::to_string(v[i]) +
                                            " at row " + std::to_string(i / 2));
    }

    // ---- rows
    const std::uint64_t* row(std::size_t i) const {
        return chunk_ptr_[i >> kChunkShift] + (i & kChunkMask) * stride_;
    }
    std::uint64_t* row(std::size_t i) { return chunk_ptr_[i >> kChunkShift] + (i & kChunkMask) * stride_; }

    std::uint32_t append_row(const std::uint64_t* key, std::uint64_t meta) {
        if (size_ >= kMaxEntries)
            throw std::length_error("hash table is full (" + std::to_string(kMaxEntries) + " entries)");
        const std::size_t i = size_, k = i >> kChunkShift;
        if (k >= chunks_.size()) {
            chunks_.reserve(k + 1);
            chunk_ptr_.reserve(k + 1);
            chunks_.emplace_back();
            chunk_ptr_.push_back(nullptr);
        }
        auto& c = chunks_[k];
        if (c.size() + stride_ > c.capacity()) {
            const std::size_t have = c.capacity() / stride_;
            c.reserve(std::min(kChunkEntries, std::max<std::size_t>(64, 2 * have)) * stride_);
        }
        c.insert(c.end(), key, key + words_);
        c.push_back(meta);
        chunk_ptr_[k] = c.data();
        ++size_;
        return static_cast<std::uint32_t>(i);
    }

    // ---- slots
    static std::uint64_t max_load(std::uint64_t cap) { return cap * 4 / 5; }
    static std::uint64_t cap_for(std::uint64_t n) { return std::max<std::uint64_t>((n * 5 + 3) / 4, 4); }
    static std::uint64_t bucket_of(std::uint64_t h, std::uint64_t cap) { return ((h >> 32) * cap) >> 32; }
    std::uint64_t bucket(std::uint64_t h) const { return bucket_of(h, cap_); }

    void set_capacity(std::uint64_t cap) {
        cap_ = cap;
        int bits = 0;
        while ((std::uint64_t{1} << bits) < cap) ++bits;
        idx_mask_ = bits >= 32 ? 0xFFFFFFFFu : static_cast<std::uint32_t>((std::uint64_t{1} << bits) - 1);
        tag_mask_ = ~idx_mask_;
        max_size_ = max_load(cap);
    }

    // Entry index of `key`, or kEmpty with *empty_pos = the free slot where it would go. Needs cap_ > 0.
    std::uint32_t find(const std::uint64_t* key, std::uint64_t h, std::uint64_t* empty_pos) const {
        if (cap_ == 0) return kEmpty;
        std::uint64_t pos = bucket(h);
        const std::uint32_t tag = static_cast<std::uint32_t>(h) & tag_mask_;
        for (;;) {
            const std::uint32_t s = slots_[pos];
            if (s == kEmpty) {
                if (empty_pos) *empty_pos = pos;
                return kEmpty;
            }
            if ((s & tag_mask_) == tag) {
                const std::uint32_t idx = s & idx_mask_;
                if (keys_equal(row(idx), key, words_)) return idx;
            }
            if (++pos == cap_) pos = 0;
        }
    }

    // Prefetching note: GCC treats a helper whose only effect is __builtin_prefetch as pure and deletes
    // calls to it, so helpers return addresses and the prefetches sit at the call sites.
    // A guess for prefetching: the first tag-matching entry among the first few slots of h's probe (they
    // share the prefetched cache line), or kEmpty.
    std::uint32_t candidate(std::uint64_t h) const {
        std::uint64_t pos = bucket(h);
        const std::uint32_t tag = static_cast<std::uint32_t>(h) & tag_mask_;
        for (int k = 0; k < 8; ++k) {
            const std::uint32_t s = slots_[pos];
            if (s == kEmpty) return kEmpty;
            if ((s & tag_mask_) == tag) return s & idx_mask_;
            if (++pos == cap_) pos = 0;
        }
        return kEmpty;
    }
    // ---- presence filter: one uint64 per 2^kFilterShift slots, indexed by the key's home bucket; a key sets
    // 3 bits of its word chosen by the low 18 hash bits (the bucket comes from the high 32). Every stored
    // key's bits are set (insert_one, from_entries; rebuilt by rehash, so also after growth, reserve and
    // shrink_to_fit), bits are never cleared (entries are never removed), so a key whose bits are not all set
    // is absent. Written only under the exclusive lock, read under the shared one. About 10 bits per entry at
    // load 0.8, ~2-3% false positives.
    static constexpr int kFilterShift = 3;
    static std::size_t filter_words_for(std::uint64_t cap) {
        return static_cast<std::size_t>((cap >> kFilterShift) + 1);
    }
    std::size_t filter_word(std::uint64_t h) const { return static_cast<std::size_t>(bucket(h) >> kFilterShift); }
    static std::uint64_t filter_mask(std::uint64_t h) {
        return (std::uint64_t{1} << (h & 63)) | (std::uint64_t{1} << ((h >> 6) & 63)) |
               (std::uint64_t{1} << ((h >> 12) & 63));
    }
    void filter_add(std::uint64_t h) { filter_[filter_word(h)] |= filter_mask(h); }

    void rehash(std::uint64_t new_cap) {
        std::vector<std::uint32_t> ns(new_cap, kEmpty);  // may throw: nothing changed yet
        std::vector<std::uint64_t> nf(filter_words_for(new_cap), 0);
        set_capacity(new_cap);  // nothing below throws
        constexpr std::size_t R = 16, D = 12;
        std::uint64_t ring[R];
        for (std::size_t i = 0; i < size_ + D; ++i) {
            if (i < size_) {
                const std::uint64_t h = hash(row(i));
                ring[i % R] = h;
                HYPERCHROMA_PREFETCH(&ns[bucket_of(h, new_cap)]);
            }
            if (i >= D) {
                const std::size_t j = i - D;
                const std::uint64_t h = ring[j % R];
                std::uint64_t pos = bucket_of(h, new_cap);
                while (ns[pos] != kEmpty)
                    if (++pos == new_cap) pos = 0;
                ns[pos] = (static_cast<std::uint32_t>(h) & tag_mask_) | static_cast<std::uint32_t>(j);
                nf[bucket_of(h, new_cap) >> kFilterShift] |= filter_mask(h);
            }
        }
        slots_.swap(ns);
        filter_.swap(nf);
    }

    // Append a new entry whose free slot find() gave as `pos` (growing the slots first when needed).
    std::uint32_t add_entry(const std::uint64_t* key, std::uint64_t h, std::uint64_t pos, std::uint64_t meta) {
        if (size_ >= max_size_) {
            std::uint64_t want = std::max<std::uint64_t>(cap_ + cap_ / 2, cap_for(size_ + 1));
            want = std::min<std::uint64_t>(want, cap_for(kMaxEntries));
            if (size_ >= kMaxEntries)
                throw std::length_error("hash table is full (" + std::to_string(kMaxEntries) + " entries)");
            rehash(want);
            find(key, h, &pos);
        }
        const std::uint32_t idx = append_row(key, meta);
        slots_[pos] = (static_cast<std::uint32_t>(h) & tag_mask_) | idx;
        filter_add(h);
        return idx;
    }

    void insert_one(const std::uint64_t* key, std::uint64_t h, std::int64_t xa, std::int64_t xb) {
        std::uint64_t pos = 0;
        const std::uint32_t found = find(key, h, &pos);
        if (found != kEmpty) {
            update(found, static_cast<std::uint32_t>(h), xa, xb);
            return;
        }
        const std::uint32_t idx = add_entry(key, h, pos, pack_meta(xa, xb, 1, false));
        if (policy_ != Policy::vote) {
            acc_.push_back(Acc{xa, xb, 1});
            if (policy_ == Policy::mark) {
                const auto a32 = static_cast<std::int32_t>(xa), b32 = static_cast<std::int32_t>(xb);
                ext_.push_back(Ext{a32, a32, b32, b32});
            }
        } else {
            bool inserted = false;
            VoteBin* r = vote_get(vote_key(idx, bins_of(xa, xb)), static_cast<std::uint32_t>(h), &inserted);
            r->count = 1;
            r->sum_a = xa;
            r->sum_b = xb;
        }
    }

    void update(std::uint32_t idx, std::uint32_t h32, std::int64_t xa, std::int64_t xb) {
        std::uint64_t& m = row(idx)[words_];
        std::int64_t a = meta_a(m), b = meta_b(m);
        const std::uint32_t c = meta_count(m);
        bool conflict = meta_conflict(m);
        std::uint32_t c2 = c < kCountMax ? c + 1 : c;
        if (policy_ == Policy::vote) {
            vote_update(idx, h32, xa, xb, a, b, c);
        } else {
            Acc& s = acc_[idx];
            s.sum_a += xa;
            s.sum_b += xb;
            ++s.n;
            if (policy_ == Policy::mark) {
                Ext& e = ext_[idx];
                const auto a32 = static_cast<std::int32_t>(xa), b32 = static_cast<std::int32_t>(xb);
                e.min_a = std::min(e.min_a, a32), e.max_a = std::max(e.max_a, a32);
                e.min_b = std::min(e.min_b, b32), e.max_b = std::max(e.max_b, b32);
                conflict = conflict || too_wide(e);
            }
            a = round_div(s.sum_a, static_cast<std::int64_t>(s.n));
            b = round_div(s.sum_b, static_cast<std::int64_t>(s.n));
            c2 = static_cast<std::uint32_t>(std::min<std::uint64_t>(s.n, kCountMax));
        }
        m = pack_meta(a, b, c2, conflict);
    }

    bool too_wide(const Ext& e) const {
        const std::int64_t da = std::int64_t{e.max_a} - e.min_a, db = std::int64_t{e.max_b} - e.min_b;
        return static_cast<double>(da * da + db * db) > tol2_;
    }

    // ---- exact fitting data: reseeding and merging
    // mean / mark: give every entry its sums / count / extremes from its stored color when they were dropped.
    void ensure_acc() {
        if (acc_ready_ || policy_ == Policy::vote) return;
        std::vector<Acc> acc(size_);
        std::vector<Ext> ext(policy_ == Policy::mark ? size_ : 0);
        for (std::size_t i = 0; i < size_; ++i) acc[i] = seed_acc(row(i)[words_], policy_ == Policy::mark ? &ext[i] : nullptr);
        acc_.swap(acc);
        ext_.swap(ext);
        acc_ready_ = true;
    }
    static Acc seed_acc(std::uint64_t m, Ext* e) {
        const std::int64_t a = meta_a(m), b = meta_b(m), c = meta_count(m);
        if (e) *e = Ext{static_cast<std::int32_t>(a), static_cast<std::int32_t>(a), static_cast<std::int32_t>(b),
                        static_cast<std::int32_t>(b)};
        return Acc{a * c, b * c, static_cast<std::uint64_t>(c)};
    }
    // vote: give every entry without bin records its `count` votes for the bin of its stored color.
    void ensure_bins() {
        if (bins_complete_ || policy_ != Policy::vote) return;
        for (std::size_t i = 0; i < size_; ++i) {
            const std::uint64_t m = row(i)[words_];
            const auto h32 = static_cast<std::uint32_t>(hash(row(i)));
            bool inserted = false;
            VoteBin* r = vote_get(vote_key(static_cast<std::uint32_t>(i), bins_of(meta_a(m), meta_b(m))), h32,
                                  &inserted);
            if (inserted) {
                const std::int64_t c = meta_count(m);
                r->count = static_cast<std::uint32_t>(c);
                r->sum_a = meta_a(m) * c;
                r->sum_b = meta_b(m) * c;
            }
        }
        bins_complete_ = true;
    }
    void merge_acc(const HashTable& o) {
        ensure_acc();
        const bool mark = policy_ == Policy::mark;
        for (std::size_t i = 0; i < o.size_; ++i) {
            const std::uint64_t* key = o.row(i);
            const std::uint64_t om = key[words_];
            Ext oe{0, 0, 0, 0};
            Acc oa{0, 0, 0};
            if (o.acc_ready_) {
                oa = o.acc_[i];
                if (mark) oe = o.ext_[i];
            } else {
                oa = seed_acc(om, &oe);
            }
            const std::uint64_t h = hash(key);
            std::uint64_t pos = 0;
            const std::uint32_t found = find(key, h, &pos);
            if (found == kEmpty) {
                add_entry(key, h, pos, om);
                acc_.push_back(oa);
                if (mark) ext_.push_back(oe);
                continue;
            }
            Acc& s = acc_[found];
            s.sum_a += oa.sum_a;
            s.sum_b += oa.sum_b;
            s.n += oa.n;
            std::uint64_t& m = row(found)[words_];
            bool conflict = meta_conflict(m) || meta_conflict(om);
            if (mark) {
                Ext& e = ext_[found];
                e.min_a = std::min(e.min_a, oe.min_a), e.max_a = std::max(e.max_a, oe.max_a);
                e.min_b = std::min(e.min_b, oe.min_b), e.max_b = std::max(e.max_b, oe.max_b);
                conflict = conflict || too_wide(e);
            }
            m = pack_meta(round_div(s.sum_a, static_cast<std::int64_t>(s.n)),
                          round_div(s.sum_b, static_cast<std::int64_t>(s.n)),
                          static_cast<std::uint32_t>(std::min<std::uint64_t>(s.n, kCountMax)), conflict);
        }
    }
    void add_votes(std::uint32_t idx, std::uint32_t h32, std::uint32_t bins, std::uint32_t count, std::int64_t sa,
                   std::int64_t sb) {
        bool inserted = false;
        VoteBin* r = vote_get(vote_key(idx, bins), h32, &inserted);
        r->count = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{r->count} + count, 0xFFFFFFFFu));
        r->sum_a += sa;
        r->sum_b += sb;
    }
    void merge_vote(const HashTable& o) {
        ensure_bins();
        std::vector<std::uint32_t> remap(o.size_);
        for (std::size_t i = 0; i < o.size_; ++i) {
            const std::uint64_t* key = o.row(i);
            const std::uint64_t h = hash(key);
            std::uint64_t pos = 0;
            const std::uint32_t found = find(key, h, &pos);
            remap[i] = found != kEmpty ? found : add_entry(key, h, pos, key[words_]);
        }
        std::vector<std::uint8_t> seen(o.size_, 0);
        for (const VoteBin& v : o.vote_) {
            if (v.key == kNoBin) continue;
            const std::size_t e = static_cast<std::size_t>(v.key >> 32);
            seen[e] = 1;
            add_votes(remap[e], v.h32, static_cast<std::uint32_t>(v.key), v.count, v.sum_a, v.sum_b);
        }
        for (std::size_t i = 0; i < o.size_; ++i) {
            if (seen[i]) continue;  // o has no bin data for this entry: its stored color, `count` times
            const std::uint64_t m = o.row(i)[words_];
            const std::int64_t c = meta_count(m);
            add_votes(remap[i], static_cast<std::uint32_t>(hash(o.row(i))),
                      bins_of(meta_a(m), meta_b(m)), static_cast<std::uint32_t>(c), meta_a(m) * c, meta_b(m) * c);
        }
        // The touched entries' top bins (most votes, then the smaller bin) and totals, from all their records.
        constexpr std::uint32_t kNone = 0xFFFFFFFFu;
        std::vector<std::uint32_t> slot(size_, kNone);
        for (std::size_t i = 0; i < o.size_; ++i) slot[remap[i]] = static_cast<std::uint32_t>(i);
        struct Best {
            std::uint32_t count = 0, bins = 0;
            std::int64_t sum_a = 0, sum_b = 0;
            std::uint64_t total = 0;
        };
        std::vector<Best> best(o.size_);
        for (const VoteBin& v : vote_) {
            if (v.key == kNoBin) continue;
            const std::uint32_t s = slot[static_cast<std::size_t>(v.key >> 32)];
            if (s == kNone) continue;
            Best& b = best[s];
            b.total += v.count;
            const auto bins = static_cast<std::uint32_t>(v.key);
            if (v.count > b.count || (v.count == b.count && bins < b.bins)) {
                b.count = v.count;
                b.bins = bins;
                b.sum_a = v.sum_a;
                b.sum_b = v.sum_b;
            }
        }
        for (std::size_t i = 0; i < o.size_; ++i) {
            const Best& b = best[i];
            row(remap[i])[words_] = pack_meta(round_div(b.sum_a, b.count), round_div(b.sum_b, b.count),
                                              static_cast<std::uint32_t>(std::min<std::uint64_t>(b.total, kCountMax)),
                                              false);
        }
    }

    // ---- vote map
    std::uint32_t bin_of(std::int64_t q) const {
        const double v = (static_cast<double>(q) / kAbScale) / vote_bin_;  // |v| <= 12800
        return static_cast<std::uint32_t>(floor_i64(v) + 32768) & 0xFFFFu;
    }
    std::uint32_t bins_of(std::int64_t a, std::int64_t b) const { return (bin_of(a) << 16) | bin_of(b); }
    static std::uint64_t vote_key(std::uint32_t idx, std::uint32_t bins) {
        return (static_cast<std::uint64_t>(idx) << 32) | bins;
    }
    static std::uint64_t vote_hash(std::uint32_t h32, std::uint32_t bins) {
        return mix64((static_cast<std::uint64_t>(h32) << 32) | bins);
    }
    // Home bucket of a vote record (for prefetching).
    const VoteBin* vote_home(std::uint64_t vh) const {
        return vote_.empty() ? nullptr : &vote_[vh & (vote_.size() - 1)];
    }
    // The record of `key`, created with zero count and sums when absent (*inserted = true). May rehash,
    // which invalidates earlier pointers.
    VoteBin* vote_get(std::uint64_t key, std::uint32_t h32, bool* inserted) {
        if (vote_.empty() || vote_size_ + 1 > vote_.size() / 4 * 3)
            vote_rehash(std::max<std::size_t>(16, vote_.size() * 2));
        const std::size_t mask = vote_.size() - 1;
        std::size_t pos = vote_hash(h32, static_cast<std::uint32_t>(key)) & mask;
        for (;; pos = (pos + 1) & mask) {
            if (vote_[pos].key == key) {
                *inserted = false;
                return &vote_[pos];
            }
            if (vote_[pos].key == kNoBin) break;
        }
        vote_[pos] = VoteBin{key, 0, h32, 0, 0};
        ++vote_size_;
        *inserted = true;
        return &vote_[pos];
    }
    void vote_rehash(std::size_t cap) {
        std::vector<VoteBin> nv(cap, VoteBin{kNoBin, 0, 0, 0, 0});  // may throw: nothing changed yet
        const std::size_t mask = cap - 1;
        constexpr std::size_t R = 16, D = 12;
        std::size_t ring[R];  // positions in vote_ of the records in flight
        std::size_t in = 0, out = 0;
        auto place = [&](std::size_t from) {
            const VoteBin& r = vote_[from];
            std::size_t pos = vote_hash(r.h32, static_cast<std::uint32_t>(r.key)) & mask;
            while (nv[pos].key != kNoBin) pos = (pos + 1) & mask;
            nv[pos] = r;
        };
        for (std::size_t i = 0; i < vote_.size(); ++i) {
            if (vote_[i].key == kNoBin) continue;
            HYPERCHROMA_PREFETCH(&nv[vote_hash(vote_[i].h32, static_cast<std::uint32_t>(vote_[i].key)) & mask]);
            ring[in++ % R] = i;
            if (in - out > D) place(ring[out++ % R]);
        }
        while (out < in) place(ring[out++ % R]);
        vote_.swap(nv);
    }
    // Count one vote (xa, xb) for entry idx whose stored color is (a, b) with count c (before this vote).
    void vote_update(std::uint32_t idx, std::uint32_t h32, std::int64_t xa, std::int64_t xb, std::int64_t& a,
                     std::int64_t& b, std::uint32_t c) {
        bool inserted = false;
        const std::uint64_t tkey = vote_key(idx, bins_of(a, b));  // the top bin contains the stored color
        VoteBin* top = vote_get(tkey, h32, &inserted);
        if (inserted) {  // no bin data (finalized or loaded): reseed as c votes for the stored color's bin
            top->count = c;
            top->sum_a = a * static_cast<std::int64_t>(c);
            top->sum_b = b * static_cast<std::int64_t>(c);
        }
        const std::uint32_t top_count = top->count;
        const std::uint64_t nkey = vote_key(idx, bins_of(xa, xb));
        VoteBin* r = nkey == tkey ? top : vote_get(nkey, h32, &inserted);
        if (r->count < 0xFFFFFFFFu) {
            ++r->count;
            r->sum_a += xa;
            r->sum_b += xb;
        }
        if (nkey == tkey || r->count > top_count ||
            (r->count == top_count && static_cast<std::uint32_t>(nkey) < static_cast<std::uint32_t>(tkey))) {
            a = round_div(r->sum_a, r->count);
            b = round_div(r->sum_b, r->count);
        }
    }

    // ---- lookup kernel: hash + prefetch the slot D keys ahead, then probe and compare. (Measured: an extra
    // stage prefetching the candidate entry row made lookups ~35% slower; the out-of-order core already
    // overlaps the row loads of consecutive keys.)
    void lookup_range(const std::uint64_t* keys, std::size_t b, std::size_t e, float* ab,
                      std::uint8_t* status) const {
        constexpr std::size_t R = 32, D = 16;
        std::uint64_t ring[R];
        const float inv = 1.0f / static_cast<float>(kAbScale);
        for (std::size_t i = b; i < e + D; ++i) {
            if (i < e) {
                const std::uint64_t h = hash(keys + i * words_);
                ring[i % R] = h;
                HYPERCHROMA_PREFETCH(&slots_[bucket(h)]);
            }
            if (i >= b + D) {
                const std::size_t j = i - D;
                const std::uint32_t idx = find(keys + j * words_, ring[j % R], nullptr);
                if (idx == kEmpty) {
                    status[j] = STATUS_MISS;
                    ab[2 * j] = ab[2 * j + 1] = 0.0f;
                } else {
                    const std::uint64_t m = row(idx)[words_];
                    if (meta_conflict(m)) {
                        status[j] = STATUS_CONFLICT;
                        ab[2 * j] = ab[2 * j + 1] = 0.0f;
                    } else {
                        status[j] = STATUS_HIT;
                        ab[2 * j] = static_cast<float>(meta_a(m)) * inv;
                        ab[2 * j + 1] = static_cast<float>(meta_b(m)) * inv;
                    }
                }
            }
        }
    }

    // ---- one-step kernel, a pipeline over keys. Stage A (key i): the key's hash h, then the hash of every
    // probe, h ^ D[channel, level, direction] (AVX2 where the CPU has it: four channels at a time), and which
    // probes exist (the level stays in 0 .. levels - 1); filter words are prefetched when the filter is larger
    // than a core's cache. Stage B (key i - 1): filter test of all probes at once (AVX2 where the CPU has it:
    // four 64-bit lanes, gathered filter words); survivors (probe, hash) are kept and their slots prefetched.
    // Stage C (key i - 2): the survivors' first tag-matching entries, rows prefetched. Stage D (key i - 3): key
    // compare, sum the usable entries' colors.
    struct OneStepBuf {
        std::vector<std::uint64_t> hv, ok;  // per probe: hash; ~0 when the probe exists, else 0
        std::vector<std::uint64_t> fw;      // per probe: its filter word (AVX2 path)
        std::vector<std::uint32_t> sj;      // survivors: probe index (their hash: hv[sj])
        std::vector<std::uint32_t> si;      // survivors: first tag-matching entry (stage C), or kEmpty
        std::size_t ns = 0;
    };
    static constexpr std::size_t kFilterCacheBytes = std::size_t{256} << 10;
    // Probe j < channels: channel j one level down; j >= channels: channel j - channels one level up.
    void one_step_hash(const std::uint64_t* key, OneStepBuf& q) const {
        const KeyLayout& L = layout_;
        const std::uint64_t fmask = L.field_mask();
        const std::uint64_t lv = static_cast<std::uint64_t>(L.levels);
        const std::uint64_t h = hash(key);
        const std::uint64_t* D = tab_->D.data();
        const std::size_t C = static_cast<std::size_t>(L.channels);
        std::uint64_t* hv = q.hv.data();
        std::uint64_t* ok = q.ok.data();
        for (int w = 0, c = 0; w < words_; ++w) {
            const std::uint64_t word = key[w];
            const int fields = std::min(L.fields_per_word, L.channels - c);
            int f = 0;
#if HYPERCHROMA_ONE_STEP_AVX2
            if (avx2_) f = one_step_hash_avx2(word, fields, c, h, q);
#endif
            for (int sh = f * L.bits; f < fields; ++f, sh += L.bits) {
                const std::size_t cc = static_cast<std::size_t>(c + f);
                const std::uint64_t level = (word >> sh) & fmask;
                const std::size_t d = ((cc << L.bits) + level) * 2;
                hv[cc] = h ^ D[d];
                hv[C + cc] = h ^ D[d + 1];
                ok[cc] = std::uint64_t{0} - static_cast<std::uint64_t>((level >= 1) & (level - 1 < lv));
                ok[C + cc] = std::uint64_t{0} - static_cast<std::uint64_t>(level + 1 < lv);
            }
            c += fields;
        }
        if (filter_.size() * sizeof(std::uint64_t) > kFilterCacheBytes)
            for (std::size_t j = 0; j < 2 * C; ++j) HYPERCHROMA_PREFETCH(&filter_[filter_word(hv[j])]);
    }
#if HYPERCHROMA_ONE_STEP_AVX2
    // one_step_hash for fields [0, fields rounded down to 4) of one word (channels c0 ...), four at a time;
    // returns where it stopped.
    __attribute__((target("avx2"))) int one_step_hash_avx2(std::uint64_t word, int fields, int c0, std::uint64_t h,
                                                          OneStepBuf& q) const {
        const KeyLayout& L = layout_;
        const std::size_t C = static_cast<std::size_t>(L.channels);
        const long long* D = reinterpret_cast<const long long*>(tab_->D.data());
        const __m256i wv = _mm256_set1_epi64x(static_cast<long long>(word));
        const __m256i hvv = _mm256_set1_epi64x(static_cast<long long>(h));
        const __m256i fm = _mm256_set1_epi64x(static_cast<long long>(L.field_mask()));
        const __m256i lvp1 = _mm256_set1_epi64x(L.levels + 1), lvm1 = _mm256_set1_epi64x(L.levels - 1);
        const __m256i zero = _mm256_setzero_si256();
        const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
        const __m256i bits = _mm256_set1_epi64x(L.bits);
        int f = 0;
        for (; f + 4 <= fields; f += 4) {
            const __m256i fi = _mm256_add_epi64(_mm256_set1_epi64x(f), lane);
            const __m256i shift = _mm256_mul_epu32(fi, bits);
            const __m256i level = _mm256_and_si256(_mm256_srlv_epi64(wv, shift), fm);
            const __m256i cc = _mm256_add_epi64(_mm256_set1_epi64x(c0), fi);
            const __m256i d = _mm256_slli_epi64(_mm256_add_epi64(_mm256_sll_epi64(cc, _mm_cvtsi32_si128(L.bits)), level), 1);
            const __m256i dn = _mm256_xor_si256(hvv, _mm256_i64gather_epi64(D, d, 8));
            const __m256i up = _mm256_xor_si256(hvv, _mm256_i64gather_epi64(D + 1, d, 8));
            // down exists when 1 <= level <= levels, up when level < levels - 1 (signed compares of small values)
            const __m256i okd = _mm256_and_si256(_mm256_cmpgt_epi64(level, zero), _mm256_cmpgt_epi64(lvp1, level));
            const __m256i oku = _mm256_cmpgt_epi64(lvm1, level);
            const std::size_t c = static_cast<std::size_t>(c0 + f);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.hv.data() + c), dn);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.hv.data() + C + c), up);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.ok.data() + c), okd);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.ok.data() + C + c), oku);
        }
        return f;
    }
#endif
    void one_step_filter(OneStepBuf& q) const {
        const std::size_t np = 2 * static_cast<std::size_t>(layout_.channels);
        std::size_t ns = 0, j = 0;
#if HYPERCHROMA_ONE_STEP_AVX2
        if (avx2_) ns = one_step_filter_avx2(q, np, &j);
#endif
        for (; j < np; ++j) {
            const std::uint64_t h = q.hv[j];
            const std::uint64_t m = filter_mask(h);
            q.sj[ns] = static_cast<std::uint32_t>(j);
            ns += ((filter_[filter_word(h)] & m) == m) & (q.ok[j] != 0);
        }
        for (std::size_t k = 0; k < ns; ++k) HYPERCHROMA_PREFETCH(&slots_[bucket(q.hv[q.sj[k]])]);
        q.ns = ns;
    }
#if HYPERCHROMA_ONE_STEP_AVX2
    // kPack4[m]: the indices of the set bits of m (4 bits), then zeros.
    static constexpr std::uint32_t kPack4[16][4] = {
        {0, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {2, 0, 0, 0}, {0, 2, 0, 0}, {1, 2, 0, 0},
        {0, 1, 2, 0}, {3, 0, 0, 0}, {0, 3, 0, 0}, {1, 3, 0, 0}, {0, 1, 3, 0}, {2, 3, 0, 0}, {0, 2, 3, 0},
        {1, 2, 3, 0}, {0, 1, 2, 3}};
    // The filter test of probes [0, np rounded down to 4), four at a time; *done = where it stopped.
    __attribute__((target("avx2"))) std::size_t one_step_filter_avx2(OneStepBuf& q, std::size_t np,
                                                                   std::size_t* done) const {
        const __m256i m63 = _mm256_set1_epi64x(63), one = _mm256_set1_epi64x(1);
        // the filter words by scalar loads (Zen's 64-bit gathers are slower than four loads)
        std::uint64_t* fw = q.fw.data();
        for (std::size_t k = 0; k < np; ++k) fw[k] = filter_[filter_word(q.hv[k])];
        std::size_t ns = 0, j = 0;
        for (; j + 4 <= np; j += 4) {
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.hv.data() + j));
            const __m256i okv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.ok.data() + j));
            const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(fw + j));
            const __m256i m = _mm256_or_si256(
                _mm256_or_si256(_mm256_sllv_epi64(one, _mm256_and_si256(h, m63)),
                                _mm256_sllv_epi64(one, _mm256_and_si256(_mm256_srli_epi64(h, 6), m63))),
                _mm256_sllv_epi64(one, _mm256_and_si256(_mm256_srli_epi64(h, 12), m63)));
            const __m256i pass = _mm256_and_si256(_mm256_cmpeq_epi64(_mm256_and_si256(words, m), m), okv);
            const unsigned bits = static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(pass)));
            // left-pack the passing lanes' probe indices (branch-free: 4 written, popcount kept)
            const __m128i lanes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPack4[bits]));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q.sj.data() + ns),
                             _mm_add_epi32(lanes, _mm_set1_epi32(static_cast<int>(j))));
            ns += static_cast<std::size_t>(__builtin_popcount(bits));
        }
        *done = j;
        return ns;
    }
#endif
    // Stage C: the first entry whose tag matches before an empty slot (kEmpty: the key is absent); its
    // row is prefetched.
    void one_step_slots(OneStepBuf& q) const {
        for (std::size_t j = 0; j < q.ns; ++j) {
            const std::uint64_t h = q.hv[q.sj[j]];
#if HYPERCHROMA_ONE_STEP_AVX2
            const std::uint32_t idx = avx2_ ? first_tag_avx2(h) : first_tag(h, bucket(h));
#else
            const std::uint32_t idx = first_tag(h, bucket(h));
#endif
            if (idx != kEmpty) HYPERCHROMA_PREFETCH(row(idx));
            q.si[j] = idx;
        }
    }
    // The first entry whose tag matches h's in its probe sequence from pos, before an empty slot, or kEmpty.
    std::uint32_t first_tag(std::uint64_t h, std::uint64_t pos) const {
        const std::uint32_t tag = static_cast<std::uint32_t>(h) & tag_mask_;
        for (;;) {
            const std::uint32_t s = slots_[pos];
            if (s == kEmpty) return kEmpty;
            if ((s & tag_mask_) == tag) return s & idx_mask_;
            if (++pos == cap_) pos = 0;
        }
    }
#if HYPERCHROMA_ONE_STEP_AVX2
    // first_tag, 8 slots at a time (a miss at load 0.8 scans ~13 slots); the scalar loop near the array's end.
    __attribute__((target("avx2"))) std::uint32_t first_tag_avx2(std::uint64_t h) const {
        std::uint64_t pos = bucket(h);
        const std::uint32_t tag = static_cast<std::uint32_t>(h) & tag_mask_;
        const __m256i tagv = _mm256_set1_epi32(static_cast<int>(tag));
        const __m256i tmask = _mm256_set1_epi32(static_cast<int>(tag_mask_));
        const __m256i empty = _mm256_set1_epi32(-1);
        while (pos + 8 <= cap_) {
            const __m256i sv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(slots_.data() + pos));
            const unsigned me = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(sv, empty))));
            const unsigned mt = static_cast<unsigned>(_mm256_movemask_ps(
                                    _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(sv, tmask), tagv)))) & ~me;
            if (me | mt) {
                const int k = __builtin_ctz(me | mt);
                return (mt >> k) & 1 ? slots_[pos + static_cast<std::uint64_t>(k)] & idx_mask_ : kEmpty;
            }
            pos += 8;
        }
        return first_tag(h, pos == cap_ ? 0 : pos);
    }
#endif
    // Stage D: compare keys (find() again in the rare case of a tag match on another key), sum the colors.
    void one_step_probe(const std::uint64_t* key, const OneStepBuf& q, std::uint64_t* probe, float* ab,
                        std::uint8_t* hits) const {
        OneStepSum sum;
        std::copy(key, key + words_, probe);
        const KeyLayout& L = layout_;
        for (std::size_t j = 0; j < q.ns; ++j) {
            std::uint32_t idx = q.si[j];
            if (idx == kEmpty) continue;
            const bool up = q.sj[j] >= static_cast<std::uint32_t>(L.channels);
            const int c = static_cast<int>(q.sj[j]) - (up ? L.channels : 0);
            const int w = c / L.fields_per_word;
            const std::uint64_t step = std::uint64_t{1} << ((c % L.fields_per_word) * L.bits);
            probe[w] = up ? key[w] + step : key[w] - step;
            if (!keys_equal(row(idx), probe, words_)) idx = find(probe, q.hv[q.sj[j]], nullptr);
            probe[w] = key[w];
            if (idx != kEmpty) sum.add(row(idx)[words_]);
        }
        sum.write(ab, hits);
    }
    void one_step_range(const std::uint64_t* keys, std::size_t b, std::size_t e, float* ab,
                        std::uint8_t* hits) const {
        const std::size_t maxp = 2 * static_cast<std::size_t>(layout_.channels);
        constexpr std::size_t R = 4;  // buffers in flight (>= 4 stages)
        thread_local OneStepBuf q_buf[R];  // the thread's, kept: no allocation once grown to the widest key
        thread_local std::vector<std::uint64_t> probe_buf;
        OneStepBuf* const q = q_buf;  // (one TLS address lookup a call, not one a key)
        for (std::size_t r = 0; r < R; ++r) {
            OneStepBuf& x = q[r];
            x.hv.resize(maxp);
            x.ok.resize(maxp);
            x.fw.resize(maxp);
            x.sj.resize(maxp + 4);  // + 4: the branch-free compactions write past the last survivor
            x.si.resize(maxp);
            x.ns = 0;
        }
        probe_buf.resize(static_cast<std::size_t>(words_));
        std::uint64_t* const probe = probe_buf.data();
        for (std::size_t i = b; i < e + 3; ++i) {
            if (i < e) one_step_hash(keys + i * words_, q[i % R]);
            if (i >= b + 1 && i - 1 < e) one_step_filter(q[(i - 1) % R]);
            if (i >= b + 2 && i - 2 < e) one_step_slots(q[(i - 2) % R]);
            if (i >= b + 3) {
                const std::size_t j = i - 3;
                one_step_probe(keys + j * words_, q[j % R], probe, ab + 2 * j, hits + j);
            }
        }
    }

    KeyLayout layout_;
    int words_;
    std::size_t stride_;
    Policy policy_;
    double tolerance_, vote_bin_, tol2_ = 0;
    const Tabulation* tab_;  // Tabulation::of(layout_), shared
#if HYPERCHROMA_ONE_STEP_AVX2
    bool avx2_ = __builtin_cpu_supports("avx2");
#endif

    std::size_t size_ = 0;
    std::vector<std::vector<std::uint64_t>> chunks_;
    std::vector<std::uint64_t*> chunk_ptr_;

    std::vector<std::uint32_t> slots_;
    std::uint64_t cap_ = 0, max_size_ = 0;
    std::uint32_t idx_mask_ = 0, tag_mask_ = 0xFFFFFFFFu;
    std::vector<std::uint64_t> filter_;  // presence filter over the slots (see filter_mask)

    std::vector<VoteBin> vote_;
    std::size_t vote_size_ = 0;

    std::vector<Acc> acc_;  // mean / mark, parallel to the rows while acc_ready_
    std::vector<Ext> ext_;  // mark, parallel to the rows while acc_ready_
    bool acc_ready_ = true;      // mean / mark: acc_ (and ext_) hold every entry's exact fitting data
    bool bins_complete_ = true;  // vote: every entry has bin records (else some are reseeded when needed)

    mutable std::shared_mutex mutex_;
};

}  // namespace hyperchroma
