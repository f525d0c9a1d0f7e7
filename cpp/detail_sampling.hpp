// upsample_detail: a film frame's full-resolution ab from its model-size ab plus keyframe detail carried along
// the motion (python/hyperchroma/video/film.py states the method and keeps a numpy reference in the tests).
//
// out (2, H, W) = upsample_bilinear(ab_small) + sum over tracks of weight(x) * sample(detail, pos(x)) / scale,
// where per track: detail (H, W, 2) int16 is a keyframe's fixed-point full-resolution detail; motion (3, h, w)
// float32 holds, per model-size pixel, the keyframe position (x, y) in model-size pixels and the weight;
// pos(x) and weight(x) are motion upsampled bilinearly exactly as upsample_bilinear does (the same
// interp_row), the position mapped to full-resolution pixels (X = x * W / w + (W / w - 1) / 2, the pixel
// centers' correspondence) and the detail sampled bilinearly there with the border replicated (OpenCV remap's
// BORDER_REPLICATE, without its 1/32 fraction rounding). A pixel whose weight is 0 or not finite, or whose
// position is not finite, takes nothing from that track.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hypercolumns.hpp"
#include "parallel.hpp"
#include "simd.hpp"

namespace hyperchroma {

namespace detail {
// One output row of one track: positions (rx, ry, model-size pixels, upsampled) and weights rw -> clamped
// full-resolution coordinates (branch-free, vectorized; NaN and inf give weight 0), then the bilinear gathers.
HYPERCHROMA_CLONES inline void sample_detail_row(const std::int16_t* dd, int H, int W, float sx, float sy, float ox,
                                                 float oy, float inv, float* rx, float* ry, float* rw, float* oa,
                                                 float* ob) {
    const float xmax = static_cast<float>(W - 1), ymax = static_cast<float>(H - 1);
    for (int x = 0; x < W; ++x) {
        const float wt = rw[x];
        const float X = rx[x] * sx + ox, Y = ry[x] * sy + oy;
        const bool ok = (wt - wt == 0.0f) && (X - X == 0.0f) && (Y - Y == 0.0f);  // all finite
        rw[x] = ok ? wt * inv : 0.0f;
        rx[x] = ok ? std::min(std::max(X, 0.0f), xmax) : 0.0f;
        ry[x] = ok ? std::min(std::max(Y, 0.0f), ymax) : 0.0f;
    }
    const std::size_t row2 = 2 * static_cast<std::size_t>(W);
    for (int x = 0; x < W; ++x) {
        const float wt = rw[x];
        if (wt == 0.0f) continue;
        const float X = rx[x], Y = ry[x];
        const int x0 = static_cast<int>(X), y0 = static_cast<int>(Y);
        const int dx = x0 + 1 < W ? 2 : 0;
        const std::size_t dy = y0 + 1 < H ? row2 : 0;
        const float fx = X - static_cast<float>(x0), fy = Y - static_cast<float>(y0);
        const std::int16_t* p = dd + 2 * (static_cast<std::size_t>(y0) * W + x0);
        const float w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
        oa[x] += wt * (w00 * p[0] + w01 * p[dx] + w10 * p[dy] + w11 * p[dy + dx]);
        ob[x] += wt * (w00 * p[1] + w01 * p[dx + 1] + w10 * p[dy + 1] + w11 * p[dy + dx + 1]);
    }
}
}  // namespace detail

struct DetailTrack {
    const std::int16_t* detail;  // (H, W, 2): a and b of a pixel side by side
    const float* motion;         // (3, h, w): x, y, weight
};

inline void upsample_detail(const float* ab_small, int h, int w, int H, int W, const std::vector<DetailTrack>& tracks,
                            float scale, float* out, int threads = 1) {
    const FeatureMap abm{ab_small, 2, h, w};
    std::vector<FeatureMap> maps{abm};
    for (const auto& t : tracks) maps.push_back(FeatureMap{t.motion, 3, h, w});
    const auto taps = detail::map_taps(maps, H, W);
    const float sx = static_cast<float>(W) / static_cast<float>(w), sy = static_cast<float>(H) / static_cast<float>(h);
    const float ox = 0.5f * sx - 0.5f, oy = 0.5f * sy - 0.5f;
    const float inv = 1.0f / scale;
    const std::size_t plane = static_cast<std::size_t>(H) * static_cast<std::size_t>(W);
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        thread_local std::vector<float> buf;
        buf.resize(static_cast<std::size_t>(w) + 3 * static_cast<std::size_t>(W));
        float* tmp = buf.data();
        float* rx = tmp + w;
        float* ry = rx + W;
        float* rw = ry + W;
        for (std::size_t y = y0; y < y1; ++y) {
            const int yi = static_cast<int>(y);
            float* oa = out + y * static_cast<std::size_t>(W);
            float* ob = oa + plane;
            for (int c = 0; c < 2; ++c) {
                float* dst = c == 0 ? oa : ob;
                const float* r = detail::interp_row(maps[0], taps[0], c, yi, tmp, dst, W);
                if (r != dst) std::copy(r, r + W, dst);
            }
            for (std::size_t k = 0; k < tracks.size(); ++k) {
                const FeatureMap& m = maps[k + 1];
                const auto& t = taps[k + 1];
                const float* px = detail::interp_row(m, t, 0, yi, tmp, rx, W);
                if (px != rx) std::copy(px, px + W, rx);
                const float* py = detail::interp_row(m, t, 1, yi, tmp, ry, W);
                if (py != ry) std::copy(py, py + W, ry);
                const float* pw = detail::interp_row(m, t, 2, yi, tmp, rw, W);
                if (pw != rw) std::copy(pw, pw + W, rw);
                pw = rw;
                detail::sample_detail_row(tracks[k].detail, H, W, sx, sy, ox, oy, inv, rx, ry, rw, oa, ob);
            }
        }
    });
}

}  // namespace hyperchroma
