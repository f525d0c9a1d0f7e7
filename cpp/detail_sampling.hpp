// upsample_detail: a film frame's full-resolution ab from its model-size ab plus keyframe detail carried along
// the motion (python/hyperchroma/video/film.py states the method and keeps a numpy reference in the tests).
//
// out (2, H, W) = upsample_bilinear(ab_small) + sum over tracks of weight(x) * sample(detail, pos(x)) / scale,
// where per track: detail (2, H, W) int16 is a keyframe's fixed-point full-resolution detail; motion (3, h, w)
// float32 holds, per model-size pixel, the keyframe position (x, y) in model-size pixels and the weight;
// pos(x) and weight(x) are motion upsampled bilinearly exactly as upsample_bilinear does (the same
// interp_row), the position mapped to full-resolution pixels (X = x * W / w + (W / w - 1) / 2, the pixel
// centers' correspondence) and the detail sampled bilinearly there with the border replicated (OpenCV remap's
// BORDER_REPLICATE, without its 1/32 fraction rounding). A pixel whose weight is 0 or not finite, or whose
// position is not finite, takes nothing from that track.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hypercolumns.hpp"
#include "parallel.hpp"

namespace hyperchroma {

struct DetailTrack {
    const std::int16_t* detail;  // (2, H, W)
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
                const std::int16_t* da = tracks[k].detail;
                const std::int16_t* db = da + plane;
                for (int x = 0; x < W; ++x) {
                    const float wt = pw[x];
                    if (!(wt != 0.0f) || !std::isfinite(wt)) continue;
                    float X = rx[x] * sx + ox, Y = ry[x] * sy + oy;
                    if (!std::isfinite(X) || !std::isfinite(Y)) continue;
                    X = std::min(std::max(X, 0.0f), static_cast<float>(W - 1));
                    Y = std::min(std::max(Y, 0.0f), static_cast<float>(H - 1));
                    const int x0 = static_cast<int>(X), yy0 = static_cast<int>(Y);
                    const int x1 = std::min(x0 + 1, W - 1), yy1 = std::min(yy0 + 1, H - 1);
                    const float fx = X - static_cast<float>(x0), fy = Y - static_cast<float>(yy0);
                    const std::size_t i00 = static_cast<std::size_t>(yy0) * W + x0, i01 = static_cast<std::size_t>(yy0) * W + x1;
                    const std::size_t i10 = static_cast<std::size_t>(yy1) * W + x0, i11 = static_cast<std::size_t>(yy1) * W + x1;
                    const float w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
                    const float va = w00 * da[i00] + w01 * da[i01] + w10 * da[i10] + w11 * da[i11];
                    const float vb = w00 * db[i00] + w01 * db[i01] + w10 * db[i10] + w11 * db[i11];
                    oa[x] += wt * inv * va;
                    ob[x] += wt * inv * vb;
                }
            }
        }
    });
}

}  // namespace hyperchroma
