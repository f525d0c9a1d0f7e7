// compose_grid: compose_luma (color.hpp) on ab rounded to a grid, answered from a table filled as cells are met,
// fused with the bilinear upsampling of the model-size ab (hypercolumns.hpp's interp_row, so the ab reaching
// the grid are bit-identical to upsample_bilinear's).
//
// compose_luma solves, per pixel, the lightness at which (L', a, b) has the requested 601 luma (Newton steps
// with sRGB powers, gamut bisections for the rare out-of-gamut colors): about 25 ns a pixel on one core, the
// largest cost of a frame at full resolution. Its answer depends on (gray, a, b) only. With a and b rounded to
// the nearest multiple of kStep (1 ab unit: at most 0.5 off per channel, a CIE delta E of 0.71 at most, far
// below the just-noticeable difference of about 2.3; a 2-unit grid measured 0.12-0.17 dB PSNR lower on the films,
// this one within 0.04 dB of exact), every answer is one of 256 per grid cell: the table holds,
// per cell (a, b), the 256 rgb answers (768 bytes, filled by compose_luma itself the first time a pixel falls in
// the cell). The output keeps compose_luma's contract exactly (Pillow's convert("L") gives the gray back, every
// pixel): it IS compose_luma, of the rounded ab. Pixels whose ab is non-finite or outside +-kHalf * kStep (no
// sRGB color is: |a| < 99, |b| < 108) go through compose_luma with their own ab.
//
// The table is one per process (it depends on constants only): 225 x 225 cells x 768 bytes = 39 MB of address
// space, touched only where cells fill (a 720x528 film frame meets about 1300 cells: 1 MB, 8 ms to fill once). Filling is lock-free:
// the thread that claims a cell (0 -> 1) fills it and publishes it (-> 2, release); a thread meeting a cell
// being filled computes its pixel itself. Results therefore never depend on threads or call order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "color.hpp"
#include "hypercolumns.hpp"
#include "parallel.hpp"

namespace hyperchroma {
namespace grid {

constexpr float kStep = 1.0f;         // ab grid spacing
constexpr int kHalf = 112;            // grid covers a, b in [-kHalf * kStep, kHalf * kStep]
constexpr int kSide = 2 * kHalf + 1;  // cells per axis
constexpr std::size_t kCells = static_cast<std::size_t>(kSide) * kSide;
constexpr std::size_t kCellBytes = 256 * 3;

// The grid index (0..kSide-1) of an ab value: v / kStep + kHalf + 0.5 truncated, that sum rounded to float32
// (v / 2 is exact; the sum rounds to the nearest float, so a value a hair below a half-way point may round up),
// or -1 outside the grid or non-finite. No floor: a truncation of a non-negative float (cvttps, vectorized).
inline float axis_offset(float v) { return v * (1.0f / kStep) + (static_cast<float>(kHalf) + 0.5f); }
inline bool axis_inside(float u) { return u >= 0.0f && u < static_cast<float>(kSide); }  // false for NaN
inline int axis_index(float v) {
    const float u = axis_offset(v);
    return axis_inside(u) ? static_cast<int>(u) : -1;
}

inline float grid_value(int index) { return static_cast<float>(index - kHalf) * kStep; }

class Table {
public:
    Table() : rgb_(new std::uint8_t[kCells * kCellBytes + 1]), state_(new std::atomic<std::uint8_t>[kCells]) {
        for (std::size_t i = 0; i < kCells; ++i) state_[i].store(0, std::memory_order_relaxed);
    }
    // The 768 bytes (gray y -> rgb at 3 * y) of cell (ia, ib), filling it if this thread claims it; nullptr when
    // another thread is filling it right now (the caller computes its pixel itself).
    const std::uint8_t* cell(int ia, int ib) {
        const std::size_t c = static_cast<std::size_t>(ia) * kSide + ib;
        std::uint8_t* out = rgb_.get() + c * kCellBytes;
        std::uint8_t s = state_[c].load(std::memory_order_acquire);
        if (s == 2) return out;
        if (s == 0 && state_[c].compare_exchange_strong(s, 1, std::memory_order_acq_rel)) {
            fill(grid_value(ia), grid_value(ib), out);
            state_[c].store(2, std::memory_order_release);
            return out;
        }
        return nullptr;
    }
    // Whether cell c (= ia * kSide + ib) is filled; its bytes are then at data() + c * kCellBytes.
    bool ready(std::size_t c) const { return state_[c].load(std::memory_order_acquire) == 2; }
    const std::uint8_t* data() const { return rgb_.get(); }
    std::size_t filled() const {
        std::size_t k = 0;
        for (std::size_t i = 0; i < kCells; ++i) k += state_[i].load(std::memory_order_relaxed) == 2;
        return k;
    }

private:
    static void fill(float a, float b, std::uint8_t* out) {
        std::uint8_t gray[256];
        float ab[512];
        for (int y = 0; y < 256; ++y) gray[y] = static_cast<std::uint8_t>(y), ab[2 * y] = a, ab[2 * y + 1] = b;
        compose_luma(gray, ab, 256, false, out, 1);
    }
    std::unique_ptr<std::uint8_t[]> rgb_;  // not value-initialized: pages are touched as cells fill (+1 byte: see
                                           // upsample_compose_grid's 4-byte copies)
    std::unique_ptr<std::atomic<std::uint8_t>[]> state_;
};

inline Table& table() {
    static Table t;
    return t;
}

// One pixel: compose_luma of (y, a, b) with a, b rounded to the grid (or as they are outside it).
inline void pixel(Table& t, std::uint8_t y, float a, float b, std::uint8_t* rgb) {
    const int ia = axis_index(a), ib = axis_index(b);
    const std::uint8_t* c = nullptr;
    float ab[2] = {a, b};
    if (ia >= 0 && ib >= 0) {
        c = t.cell(ia, ib);
        ab[0] = grid_value(ia), ab[1] = grid_value(ib);
    }
    if (c) {
        std::memcpy(rgb, c + 3 * y, 3);
    } else {
        compose_luma(&y, ab, 1, false, rgb, 1);
    }
}

}  // namespace grid

// gray (n,) uint8 and ab planar (2, n) -> rgb (n, 3): compose_luma(gray, ab rounded to the grid) (see top).
inline void compose_luma_grid(const std::uint8_t* gray, const float* ab, std::size_t n, std::uint8_t* rgb,
                              int threads = 1) {
    auto& t = grid::table();
    parallel_for(n, threads, 4096, [&](std::size_t b0, std::size_t b1) {
        for (std::size_t i = b0; i < b1; ++i) grid::pixel(t, gray[i], ab[i], ab[n + i], rgb + 3 * i);
    });
}

// gray (H, W) uint8 and model-size ab planar (2, h, w) -> rgb (H, W, 3): the ab upsampled bilinearly to (H, W)
// exactly as upsample_bilinear does, then compose_luma_grid, one output row at a time (no full-size ab).
inline void upsample_compose_grid(const std::uint8_t* gray, int H, int W, const float* ab_small, int h, int w,
                                  std::uint8_t* rgb, int threads = 1) {
    auto& t = grid::table();
    const FeatureMap m{ab_small, 2, h, w};
    thread_local detail::TapsCache cache;  // the calling thread's; helpers read it through `taps`
    const std::vector<detail::MapTaps>& taps = cache.get(&m, 1, H, W);
    parallel_for(static_cast<std::size_t>(H), threads, detail::kRowsPerChunk, [&](std::size_t y0, std::size_t y1) {
        thread_local std::vector<float> buf;  // reused across calls: 2 x (vertical blend (w), row (W))
        thread_local std::vector<std::int32_t> cells;  // the row's grid cells (-1: outside the grid)
        buf.resize(2 * (static_cast<std::size_t>(w) + static_cast<std::size_t>(W)));
        cells.resize(static_cast<std::size_t>(W));
        float* ta = buf.data();
        float* tb = ta + w;
        float* ra = tb + w;
        float* rb = ra + W;
        std::int32_t* ci = cells.data();
        for (std::size_t y = y0; y < y1; ++y) {
            const float* a = detail::interp_row(m, taps[0], 0, static_cast<int>(y), ta, ra, W);
            const float* b = detail::interp_row(m, taps[0], 1, static_cast<int>(y), tb, rb, W);
            for (int x = 0; x < W; ++x) {  // branch-free, vectorized: the cell of each pixel
                const float ua = grid::axis_offset(a[x]), ub = grid::axis_offset(b[x]);
                const bool in = grid::axis_inside(ua) && grid::axis_inside(ub);
                ci[x] = in ? static_cast<std::int32_t>(in ? ua : 0.0f) * grid::kSide + static_cast<std::int32_t>(in ? ub : 0.0f)
                           : -1;
            }
            const std::uint8_t* g = gray + y * static_cast<std::size_t>(W);
            std::uint8_t* out = rgb + y * static_cast<std::size_t>(W) * 3;
            // Usually every cell of the row is in the grid and filled: then a pass without branches (the cell
            // changes every few pixels, a branch on it is mispredicted often).
            bool ready = true;
            for (int x = 0; x < W && ready; ++x) ready = ci[x] >= 0 && t.ready(static_cast<std::size_t>(ci[x]));
            if (ready) {
                const std::uint8_t* base = t.data();
                // 4 bytes read and written a pixel, the 4th overwritten by the next pixel (the table has a
                // byte of padding past its last cell); the row's last pixel 3 bytes
                for (int x = 0; x + 1 < W; ++x)
                    std::memcpy(out + 3 * x, base + static_cast<std::size_t>(ci[x]) * grid::kCellBytes + 3 * g[x], 4);
                const std::uint8_t* src = base + static_cast<std::size_t>(ci[W - 1]) * grid::kCellBytes + 3 * g[W - 1];
                std::memcpy(out + 3 * (W - 1), src, 3);
                continue;
            }
            std::int32_t last = -1;
            const std::uint8_t* cell = nullptr;
            for (int x = 0; x < W; ++x) {
                const std::int32_t c = ci[x];
                if (c != last || !cell) {
                    cell = c >= 0 ? t.cell(c / grid::kSide, c % grid::kSide) : nullptr;
                    last = c;
                }
                if (cell) {
                    const std::uint8_t* src = cell + 3 * g[x];
                    out[3 * x] = src[0], out[3 * x + 1] = src[1], out[3 * x + 2] = src[2];
                } else {
                    grid::pixel(t, g[x], a[x], b[x], out + 3 * x);
                }
            }
        }
    });
}

}  // namespace hyperchroma
