// Packed quantized keys: the layout shared by the hypercolumn kernels, the hash table and the sorted index.
//
// A key holds one quantization level (0 .. levels-1) per hypercolumn channel. Each level takes
// bits = ceil(log2(levels)) bits; a 64-bit word holds floor(64 / bits) fields and a field never straddles
// two words, so channel c lives in word c / fields_per_word at bit (c % fields_per_word) * bits.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace hyperchroma {

struct KeyLayout {
    int channels = 0;
    int levels = 0;
    int bits = 0;
    int fields_per_word = 0;
    int words = 0;

    KeyLayout() = default;
    KeyLayout(int channels_, int levels_) : channels(channels_), levels(levels_) {
        if (channels_ < 1)
            throw std::invalid_argument("channels must be >= 1, got " + std::to_string(channels_));
        if (levels_ < 2 || levels_ > 256)
            throw std::invalid_argument("levels must be in 2..256, got " + std::to_string(levels_));
        bits = 1;
        while ((1 << bits) < levels_) ++bits;
        fields_per_word = 64 / bits;
        words = (channels_ + fields_per_word - 1) / fields_per_word;
    }

    std::uint64_t field_mask() const { return (std::uint64_t{1} << bits) - 1; }

    // Level of channel c in a packed key.
    int get(const std::uint64_t* key, int c) const {
        const int w = c / fields_per_word, s = (c % fields_per_word) * bits;
        return static_cast<int>((key[w] >> s) & field_mask());
    }
    void set(std::uint64_t* key, int c, int level) const {
        const int w = c / fields_per_word, s = (c % fields_per_word) * bits;
        key[w] = (key[w] & ~(field_mask() << s)) | (static_cast<std::uint64_t>(level) << s);
    }
    // Why a packed key is invalid (bits beyond the last field of a word, or a level >= levels), or nullptr.
    const char* key_problem(const std::uint64_t* key) const {
        const std::uint64_t mask = field_mask();
        const bool full = (1 << bits) == levels;
        for (int c0 = 0, w = 0; c0 < channels; c0 += fields_per_word, ++w) {
            const int fields = channels - c0 < fields_per_word ? channels - c0 : fields_per_word;
            const int used = fields * bits;
            std::uint64_t word = key[w];
            if (used < 64 && (word >> used) != 0) return "has non-zero bits beyond the last field of a word";
            if (full) continue;
            if (bits == 2 && levels == 3) {  // the default: a field is invalid only as 0b11
                if (word & (word >> 1) & 0x5555555555555555ULL) return "has a level out of range";
                continue;
            }
            for (int f = 0; f < fields; ++f, word >>= bits)
                if (static_cast<int>(word & mask) >= levels) return "has a level out of range";
        }
        return nullptr;
    }
    bool operator==(const KeyLayout& o) const { return channels == o.channels && levels == o.levels; }
    bool operator!=(const KeyLayout& o) const { return !(*this == o); }
};

// A well-mixed 64-bit hash of a packed key (bucket index; the weighted sum clusters too badly for that).
inline std::uint64_t mix64(std::uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}
inline std::uint64_t hash_key(const std::uint64_t* key, int words) {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(words);
    for (int w = 0; w < words; ++w) h = mix64(h ^ key[w]) + 0x9e3779b97f4a7c15ULL;
    return h;
}
inline bool keys_equal(const std::uint64_t* a, const std::uint64_t* b, int words) {
    for (int w = 0; w < words; ++w)
        if (a[w] != b[w]) return false;
    return true;
}

// A process-wide id for one version of a table's or an index's contents, never reused: a new object or a change
// of contents takes a new one, so a cache of answers (the lookup chain's miss memo) can tell it still holds.
inline std::uint64_t next_content_id() {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace hyperchroma
