// A tiny parallel-for over index ranges with std::thread (no OpenMP: it would fight ONNX Runtime's pool).
// Exceptions thrown by workers are collected and the first is rethrown on the calling thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace hyperchroma {

// Resolve a user thread count: 0 means "all hardware threads".
inline int resolve_threads(int threads) {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

// Calls fn(begin, end) on disjoint chunks covering [0, n). Runs inline when one thread suffices.
template <class Fn>
void parallel_for(std::size_t n, int threads, std::size_t min_chunk, Fn&& fn) {
    if (n == 0) return;
    std::size_t t = static_cast<std::size_t>(resolve_threads(threads));
    t = std::min(t, (n + min_chunk - 1) / std::max<std::size_t>(min_chunk, 1));
    if (t <= 1) {
        fn(std::size_t{0}, n);
        return;
    }
    std::exception_ptr error;
    std::mutex error_mutex;
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    const std::size_t chunk = (n + t - 1) / t;
    auto run = [&](std::size_t b, std::size_t e) {
        try {
            fn(b, e);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    };
    for (std::size_t i = 1; i < t; ++i) {
        const std::size_t b = i * chunk, e = std::min(n, b + chunk);
        if (b < e) pool.emplace_back(run, b, e);
    }
    run(0, std::min(n, chunk));
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace hyperchroma
