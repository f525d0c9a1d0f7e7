// Hypercolumn kernels: bilinear upsampling of conv feature maps to the image size, the materialized
// hypercolumn matrix, and the fused kernel that goes straight from maps to packed quantized keys and their
// weighted sums without ever materializing the float hypercolumns.
//
// Bilinear convention: half-pixel centers, edges clamped (OpenCV INTER_LINEAR, PyTorch align_corners=False,
// ONNX Resize half_pixel). Every path computes a channel's row with the same interp_row() so the fused keys
// are bit-for-bit the quantized materialized hypercolumns.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "keys.hpp"
#include "parallel.hpp"
#include "simd.hpp"

namespace hyperchroma {

// A (channels, h, w) float32 map in C order, not owned.
struct FeatureMap {
    const float* data;
    int channels, h, w;
};

namespace detail {

// Source taps for one axis: out[i] = src[i0] * w0 + src[i1] * w1.
struct AxisTaps {
    std::vector<int> i0, i1;
    std::vector<float> w0, w1;
    bool identity = false;  // src == dst: every output sample is exactly one input sample
};

inline AxisTaps axis_taps(int src, int dst) {
    AxisTaps t;
    t.i0.resize(dst); t.i1.resize(dst); t.w0.resize(dst); t.w1.resize(dst);
    const double scale = static_cast<double>(src) / static_cast<double>(dst);
    for (int i = 0; i < dst; ++i) {
        double s = (i + 0.5) * scale - 0.5;
        if (s < 0) s = 0;
        int a = static_cast<int>(s);  // floor, s >= 0
        double f = s - a;
        if (a >= src - 1) { a = src - 1; f = 0; }
        t.i0[i] = a;
        t.i1[i] = std::min(a + 1, src - 1);
        t.w1[i] = static_cast<float>(f);
        t.w0[i] = static_cast<float>(1.0 - f);
    }
    t.identity = (src == dst);
    return t;
}

struct MapTaps {
    AxisTaps y, x;
};

inline std::vector<MapTaps> map_taps(const FeatureMap* maps, std::size_t n, int H, int W) {
    std::vector<MapTaps> taps;
    taps.reserve(n);
    for (std::size_t i = 0; i < n; ++i) taps.push_back({axis_taps(maps[i].h, H), axis_taps(maps[i].w, W)});
    return taps;
}

inline std::vector<MapTaps> map_taps(const std::vector<FeatureMap>& maps, int H, int W) {
    return map_taps(maps.data(), maps.size(), H, W);
}

// map_taps kept for the next call with the same map sizes and output size: a call site's thread_local cache,
// so the latency path's repeated same-size calls build (allocate) nothing. Also keeps, per hypercolumn channel,
// its map and its channel in that map.
class TapsCache {
public:
    const std::vector<MapTaps>& get(const FeatureMap* maps, std::size_t n, int H, int W) {
        bool same = H == H_ && W == W_ && n == sizes_.size();
        for (std::size_t i = 0; same && i < n; ++i)
            same = sizes_[i].h == maps[i].h && sizes_[i].w == maps[i].w && sizes_[i].channels == maps[i].channels;
        if (!same) {
            H_ = -1;  // (stays unmatched if anything below throws)
            taps_ = map_taps(maps, n, H, W);
            sizes_.assign(maps, maps + n);
            map_of_.clear();
            channel_of_.clear();
            for (std::size_t i = 0; i < n; ++i)
                for (int c = 0; c < maps[i].channels; ++c) {
                    map_of_.push_back(static_cast<int>(i));
                    channel_of_.push_back(c);
                }
            H_ = H, W_ = W;
        }
        return taps_;
    }
    const std::vector<int>& map_of() const { return map_of_; }
    const std::vector<int>& channel_of() const { return channel_of_; }

private:
    std::vector<FeatureMap> sizes_;  // (only the sizes are compared)
    int H_ = -1, W_ = -1;
    std::vector<MapTaps> taps_;
    std::vector<int> map_of_, channel_of_;
};

// One output row (length W) of one channel: vertical blend into tmp (length m.w), then horizontal taps.
// Returns a pointer to the row: straight into the map when both axes are identity (same size), else `out`.
inline const float* interp_row(const FeatureMap& m, const MapTaps& t, int c, int y, float* tmp, float* out,
                               int W) {
    const float* plane = m.data + static_cast<std::size_t>(c) * m.h * m.w;
    const float* src;
    if (t.y.identity) {
        src = plane + static_cast<std::size_t>(y) * m.w;
    } else {
        const float* r0 = plane + static_cast<std::size_t>(t.y.i0[y]) * m.w;
        const float* r1 = plane + static_cast<std::size_t>(t.y.i1[y]) * m.w;
        const float a = t.y.w0[y], b = t.y.w1[y];
        for (int x = 0; x < m.w; ++x) tmp[x] = r0[x] * a + r1[x] * b;
        src = tmp;
    }
    if (t.x.identity) return src;
    const int* i0 = t.x.i0.data();
    const int* i1 = t.x.i1.data();
    const float* w0 = t.x.w0.data();
    const float* w1 = t.x.w1.data();
    for (int x = 0; x < W; ++x) out[x] = src[i0[x]] * w0[x] + src[i1[x]] * w1[x];
    return out;
}

inline int max_width(const std::vector<FeatureMap>& maps) {
    int w = 1;
    for (const auto& m : maps) w = std::max(w, m.w);
    return w;
}

constexpr std::size_t kRowsPerChunk = 4;

// z[k*n + q] += sum_c P[c*K + k] * m[c*n + q] for the pixels q in [b0, b1): one tap's projection of a block.
HYPERCHROMA_CLONES inline void project_block(const float* m, const float* P, int channels, int K, std::size_t n,
                                             std::size_t b0, std::size_t b1, float* z) {
    for (int c = 0; c < channels; ++c) {
        const float* src = m + static_cast<std::size_t>(c) * n;
        const float* pc = P + static_cast<std::size_t>(c) * K;
        for (int k = 0; k < K; ++k) {
            const float a = pc[k];
            if (a == 0.0f) continue;  // the gray tap's rows are mostly zeros
            float* dst = z + static_cast<std::size_t>(k) * n;
            for (std::size_t q = b0; q < b1; ++q) dst[q] += a * src[q];
        }
    }
}

}  // namespace detail

// (C,h,w) -> (C,H,W).
inline void upsample_bilinear(const FeatureMap& m, int H, int W, float* out, int threads = 1) {
    const std::vector<FeatureMap> maps{m};
    const auto taps = detail::map_taps(maps, H, W);
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        std::vector<float> tmp(m.w);
        for (std::size_t y = y0; y < y1; ++y)
            for (int c = 0; c < m.channels; ++c) {
                float* dst = out + (static_cast<std::size_t>(c) * H + y) * W;
                const float* row = detail::interp_row(m, taps[0], c, static_cast<int>(y), tmp.data(), dst, W);
                if (row != dst) std::copy(row, row + W, dst);
            }
    });
}

// A learned linear projection of maps, fused with their upsampling: out (K,H,W) =
// sum_i upsample(P_i^T maps_i) - bias, where P_i is (C_i, K) row-major. Each map is projected at its own
// resolution (maps of one size are summed there), then every size's K channels are upsampled and accumulated
// in one pass over the output: the cost is the small per-tap products plus one write of K*H*W floats.
inline void project_upsample(const std::vector<FeatureMap>& maps, const std::vector<const float*>& matrices, int K,
                             const float* bias, int H, int W, float* out, int threads = 1) {
    // group the maps by size; project each group into one (K, h, w) buffer
    std::vector<std::pair<int, int>> sizes;
    std::vector<int> group(maps.size());
    for (std::size_t i = 0; i < maps.size(); ++i) {
        const std::pair<int, int> hw{maps[i].h, maps[i].w};
        auto it = std::find(sizes.begin(), sizes.end(), hw);
        group[i] = static_cast<int>(it - sizes.begin());
        if (it == sizes.end()) sizes.push_back(hw);
    }
    std::vector<std::vector<float>> z(sizes.size());
    for (std::size_t g = 0; g < sizes.size(); ++g)
        z[g].assign(static_cast<std::size_t>(K) * sizes[g].first * sizes[g].second, 0.0f);
    constexpr std::size_t kPixelsPerChunk = 256;  // K rows of it stay in L1 while a tap's channels stream by
    for (std::size_t g = 0; g < sizes.size(); ++g) {
        const std::size_t n = static_cast<std::size_t>(sizes[g].first) * sizes[g].second;
        float* zg = z[g].data();
        parallel_for(n, threads, kPixelsPerChunk / 4, [&](std::size_t p0, std::size_t p1) {
            for (std::size_t b0 = p0; b0 < p1; b0 += kPixelsPerChunk) {
                const std::size_t b1 = std::min(p1, b0 + kPixelsPerChunk);
                for (std::size_t i = 0; i < maps.size(); ++i)
                    if (group[i] == static_cast<int>(g))
                        detail::project_block(maps[i].data, matrices[i], maps[i].channels, K, n, b0, b1, zg);
            }
        });
    }
    std::vector<FeatureMap> zm;
    for (std::size_t g = 0; g < sizes.size(); ++g) zm.push_back({z[g].data(), K, sizes[g].first, sizes[g].second});
    const auto taps = detail::map_taps(zm, H, W);
    const int mw = detail::max_width(zm);
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        std::vector<float> tmp(mw), row(W);
        for (std::size_t y = y0; y < y1; ++y)
            for (int k = 0; k < K; ++k) {
                float* dst = out + (static_cast<std::size_t>(k) * H + y) * W;
                const float b = bias[k];
                for (int x = 0; x < W; ++x) dst[x] = -b;
                for (std::size_t g = 0; g < zm.size(); ++g) {
                    const float* r = detail::interp_row(zm[g], taps[g], k, static_cast<int>(y), tmp.data(),
                                                        row.data(), W);
                    for (int x = 0; x < W; ++x) dst[x] += r[x];
                }
            }
    });
}

// maps... -> (H*W, sum C_i), pixel-major.
inline void hypercolumns(const std::vector<FeatureMap>& maps, int H, int W, float* out, int threads = 1) {
    const auto taps = detail::map_taps(maps, H, W);
    std::size_t total = 0;
    for (const auto& m : maps) total += static_cast<std::size_t>(m.channels);
    const int mw = detail::max_width(maps);
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        std::vector<float> tmp(mw), row(W);
        for (std::size_t y = y0; y < y1; ++y) {
            float* dst = out + y * W * total;
            std::size_t off = 0;
            for (std::size_t i = 0; i < maps.size(); ++i) {
                for (int c = 0; c < maps[i].channels; ++c, ++off) {
                    const float* r =
                        detail::interp_row(maps[i], taps[i], c, static_cast<int>(y), tmp.data(), row.data(), W);
                    for (int x = 0; x < W; ++x) dst[static_cast<std::size_t>(x) * total + off] = r[x];
                }
            }
        }
    });
}

// Thresholds are (channels, levels-1), each row sorted non-decreasing and free of NaN.
inline void check_thresholds(const float* thr, const KeyLayout& layout) {
    const int k = layout.levels - 1;
    for (int c = 0; c < layout.channels; ++c) {
        const float* t = thr + static_cast<std::size_t>(c) * k;
        for (int j = 0; j < k; ++j) {
            if (std::isnan(t[j]))
                throw std::invalid_argument("thresholds: NaN in row " + std::to_string(c));
            if (j > 0 && t[j] < t[j - 1])
                throw std::invalid_argument("thresholds: row " + std::to_string(c) +
                                            " is not sorted in non-decreasing order");
        }
    }
}

namespace detail {

// Adds channel ch's levels into one key word (acc) and the weighted sums, for one row.
HYPERCHROMA_CLONES inline void quantize_accumulate(const float* r, int W, const float* t, int k, int shift, float wc,
                                                   std::uint64_t* acc, float* sums) {
    if (k == 2) {  // 3 levels: the default
        const float t0 = t[0], t1 = t[1];
        for (int x = 0; x < W; ++x) {
            const std::uint32_t q = static_cast<std::uint32_t>(r[x] >= t0) + static_cast<std::uint32_t>(r[x] >= t1);
            acc[x] |= static_cast<std::uint64_t>(q) << shift;
            sums[x] += wc * static_cast<float>(q);
        }
    } else if (k == 3) {
        const float t0 = t[0], t1 = t[1], t2 = t[2];
        for (int x = 0; x < W; ++x) {
            const std::uint32_t q = static_cast<std::uint32_t>(r[x] >= t0) + static_cast<std::uint32_t>(r[x] >= t1) +
                                    static_cast<std::uint32_t>(r[x] >= t2);
            acc[x] |= static_cast<std::uint64_t>(q) << shift;
            sums[x] += wc * static_cast<float>(q);
        }
    } else if (k == 1) {
        const float t0 = t[0];
        for (int x = 0; x < W; ++x) {
            const std::uint32_t q = static_cast<std::uint32_t>(r[x] >= t0);
            acc[x] |= static_cast<std::uint64_t>(q) << shift;
            sums[x] += wc * static_cast<float>(q);
        }
    } else {
        for (int x = 0; x < W; ++x) {  // number of thresholds <= value
            const auto q = static_cast<std::uint32_t>(std::upper_bound(t, t + k, r[x]) - t);
            acc[x] |= static_cast<std::uint64_t>(q) << shift;
            sums[x] += wc * static_cast<float>(q);
        }
    }
}

}  // namespace detail

// Fused: maps -> keys (H*W, words) and sums (H*W,) with sums = sum_c weights[c] * level_c.
// Works word by word so each key word is built in a contiguous accumulator (vectorizable), then stored.
inline void hypercolumn_keys(const std::vector<FeatureMap>& maps, int H, int W, const KeyLayout& layout,
                             const float* thresholds, const float* weights, std::uint64_t* keys, float* sums,
                             int threads = 1) {
    thread_local detail::TapsCache cache;  // the calling thread's; the helpers read it through these references
    const std::vector<detail::MapTaps>& taps = cache.get(maps.data(), maps.size(), H, W);
    const std::vector<int>& map_of = cache.map_of();
    const std::vector<int>& channel_of = cache.channel_of();
    const int mw = detail::max_width(maps);
    const int k = layout.levels - 1;
    const int words = layout.words;
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        thread_local std::vector<float> tmp, row;  // the running thread's, kept
        thread_local std::vector<std::uint64_t> acc;
        tmp.resize(std::max<std::size_t>(tmp.size(), static_cast<std::size_t>(mw)));
        row.resize(std::max<std::size_t>(row.size(), static_cast<std::size_t>(W)));
        acc.resize(std::max<std::size_t>(acc.size(), static_cast<std::size_t>(W)));
        float* const tp = tmp.data();  // (one TLS address lookup, not one per use)
        float* const rp = row.data();
        std::uint64_t* const ap = acc.data();
        for (std::size_t y = y0; y < y1; ++y) {
            std::uint64_t* krow = keys + y * W * words;
            float* srow = sums + y * W;
            std::fill(srow, srow + W, 0.0f);
            for (int word = 0; word < words; ++word) {
                std::fill(ap, ap + W, std::uint64_t{0});
                const int c0 = word * layout.fields_per_word;
                const int c1 = std::min(layout.channels, c0 + layout.fields_per_word);
                for (int ch = c0; ch < c1; ++ch) {
                    const int i = map_of[ch];
                    const float* r = detail::interp_row(maps[i], taps[i], channel_of[ch],
                                                        static_cast<int>(y), tp, rp, W);
                    detail::quantize_accumulate(r, W, thresholds + static_cast<std::size_t>(ch) * k, k,
                                                (ch - c0) * layout.bits, weights[ch], ap, srow);
                }
                for (int x = 0; x < W; ++x) krow[static_cast<std::size_t>(x) * words + word] = ap[x];
            }
        }
    });
}

inline void pack_keys(const std::uint8_t* q, std::size_t n, const KeyLayout& layout, std::uint64_t* keys) {
    const int C = layout.channels;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t* key = keys + i * layout.words;
        std::fill(key, key + layout.words, std::uint64_t{0});
        for (int c = 0; c < C; ++c) {
            const int level = q[i * C + c];
            if (level >= layout.levels)
                throw std::invalid_argument("pack_keys: level " + std::to_string(level) + " at row " +
                                            std::to_string(i) + ", channel " + std::to_string(c) +
                                            " is out of range for " + std::to_string(layout.levels) + " levels");
            layout.set(key, c, level);
        }
    }
}

inline void unpack_keys(const std::uint64_t* keys, std::size_t n, const KeyLayout& layout, std::uint8_t* q) {
    const int C = layout.channels;
    for (std::size_t i = 0; i < n; ++i)
        for (int c = 0; c < C; ++c)
            q[i * C + c] = static_cast<std::uint8_t>(layout.get(keys + i * layout.words, c));
}

}  // namespace hyperchroma
