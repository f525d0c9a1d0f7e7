// A tiny parallel-for over index ranges with std::thread (no OpenMP: it would fight ONNX Runtime's pool).
// Exceptions thrown by workers are collected and the first is rethrown on the calling thread.
//
// The helper threads are persistent (started on first need, at most the largest count asked for, never more
// than 255) and the work is claimed, not assigned: a call splits [0, n) into the same t chunks as always
// (ceil(n / t) each), posts them, and runs chunks itself until none is left, while helpers that wake up in time
// claim the others. The caller then waits only for helpers still running a chunk they claimed, never for one
// that has not been scheduled yet: on a loaded machine a late helper costs nothing (the caller did its chunk),
// and no thread is created per call (that was about 10 thread starts per colorized frame). Each chunk runs
// exactly once, on some thread, so results are those of the same chunks run in any order.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#if !defined(_WIN32)
#include <unistd.h>
#endif

namespace hyperchroma {

// Resolve a user thread count: 0 means "all hardware threads".
inline int resolve_threads(int threads) {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

namespace detail {

struct PoolJob {
    void (*call)(void*, std::size_t, std::size_t) = nullptr;
    void* fn = nullptr;
    std::size_t n = 0, chunk = 0, chunks = 0;
    std::atomic<std::size_t> next{0};
    int max_helpers = 0;
    int helpers = 0;  // helpers inside this job (guarded by the pool's mutex)
    std::exception_ptr error;
    std::mutex error_mutex;

    void work() {  // claim and run chunks until none is left
        for (;;) {
            const std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
            if (c >= chunks) return;
            const std::size_t b = c * chunk, e = std::min(n, b + chunk);
            try {
                call(fn, b, e);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
        }
    }
};

class Pool {
public:
    void run(PoolJob& job) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            jobs_.push_back(&job);
            const std::size_t want = std::min<std::size_t>(255, static_cast<std::size_t>(job.max_helpers));
            while (workers_ < want) {
                std::thread([this] { loop(); }).detach();
                ++workers_;
            }
        }
        work_.notify_all();
        job.work();
        std::unique_lock<std::mutex> lock(mu_);
        const auto it = std::find(jobs_.begin(), jobs_.end(), &job);
        if (it != jobs_.end()) jobs_.erase(it);  // no helper joins from now on
        done_.wait(lock, [&] { return job.helpers == 0; });
    }

private:
    void loop() {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            work_.wait(lock, [&] { return !jobs_.empty(); });
            PoolJob* job = jobs_.front();
            if (job->helpers >= job->max_helpers || job->next.load(std::memory_order_relaxed) >= job->chunks) {
                jobs_.pop_front();  // full or finished: the caller finds it gone and waits for its helpers only
                continue;
            }
            ++job->helpers;
            lock.unlock();
            job->work();
            lock.lock();
            if (--job->helpers == 0) done_.notify_all();
        }
    }
    std::mutex mu_;
    std::condition_variable work_, done_;
    std::deque<PoolJob*> jobs_;
    std::size_t workers_ = 0;
};

// One pool per process, never destroyed (helpers block on its condition variable until exit). A child
// process after fork() has none of the parent's threads: it gets a fresh pool of its own.
inline Pool& pool() {
#if defined(_WIN32)
    static Pool* p = new Pool();
    return *p;
#else
    static std::atomic<Pool*> p{nullptr};
    static std::atomic<pid_t> owner{0};
    static std::mutex create;
    const pid_t me = getpid();
    Pool* cur = p.load(std::memory_order_acquire);
    if (cur == nullptr || owner.load(std::memory_order_acquire) != me) {
        std::lock_guard<std::mutex> lock(create);
        cur = p.load(std::memory_order_acquire);
        if (cur == nullptr || owner.load(std::memory_order_acquire) != me) {
            cur = new Pool();  // the parent's pool (if any) is left alone: its mutex may be held by a lost thread
            owner.store(me, std::memory_order_release);
            p.store(cur, std::memory_order_release);
        }
    }
    return *cur;
#endif
}

// fn(begin, end) on [0, n) cut into chunks of `chunk` items, claimed by the caller and up to helpers pool threads.
template <class Fn>
void run_chunks(std::size_t n, std::size_t chunk, std::size_t helpers, Fn& fn) {
    using F = std::remove_reference_t<Fn>;
    PoolJob job;
    job.call = [](void* f, std::size_t b, std::size_t e) { (*static_cast<F*>(f))(b, e); };
    job.fn = const_cast<void*>(static_cast<const void*>(&fn));
    job.n = n;
    job.chunk = chunk;
    job.chunks = (n + chunk - 1) / chunk;
    job.max_helpers = static_cast<int>(helpers);
    pool().run(job);
    if (job.error) std::rethrow_exception(job.error);
}

}  // namespace detail

// Calls fn(begin, end) on disjoint chunks covering [0, n). Runs inline when one thread suffices.
template <class Fn>
void parallel_for(std::size_t n, int threads, std::size_t min_chunk, Fn&& fn) {
    if (n == 0) return;
    std::size_t t = static_cast<std::size_t>(resolve_threads(threads));
    t = std::min(t, (n + min_chunk - 1) / std::max<std::size_t>(min_chunk, 1));
    const std::size_t chunk = t > 1 ? (n + t - 1) / t : n;
    const std::size_t chunks = (n + chunk - 1) / chunk;
    if (t <= 1 || chunks <= 1) {
        fn(std::size_t{0}, n);
        return;
    }
    detail::run_chunks(n, chunk, std::min(t, chunks) - 1, fn);
}

// Like parallel_for, but in chunks of `chunk` items (the last one shorter) claimed by whichever thread is free,
// for work whose result does not depend on how it is split (each item on its own): when a helper wakes late the
// caller takes more of the chunks instead of waiting for the helper's half.
template <class Fn>
void parallel_for_claimed(std::size_t n, int threads, std::size_t chunk, Fn&& fn) {
    if (n == 0) return;
    chunk = std::max<std::size_t>(chunk, 1);
    const std::size_t chunks = (n + chunk - 1) / chunk;
    const std::size_t t = std::min(static_cast<std::size_t>(resolve_threads(threads)), chunks);
    if (t <= 1) {
        fn(std::size_t{0}, n);
        return;
    }
    detail::run_chunks(n, chunk, t - 1, fn);
}

}  // namespace hyperchroma
