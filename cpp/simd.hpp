// Low-level helpers the kernels share. Run-time SIMD dispatch without -march flags: a function marked
// HYPERCHROMA_CLONES is compiled for several instruction sets (AVX-512 "x86-64-v4" with GCC >= 12, AVX2, and
// the baseline) and one is picked at load time (GNU ifunc), so plain loops get auto-vectorized for what the
// CPU has. Off under AddressSanitizer (ifunc resolvers run before it is set up) and with
// -DHYPERCHROMA_NO_CLONES (one portable version).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define HYPERCHROMA_NO_CLONES_ 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HYPERCHROMA_NO_CLONES_ 1
#endif
#endif

#if defined(HYPERCHROMA_NO_CLONES) || defined(HYPERCHROMA_NO_CLONES_) || !defined(__x86_64__) || \
    !defined(__ELF__) || !defined(__linux__)
#define HYPERCHROMA_CLONES
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER) && __GNUC__ >= 12
#define HYPERCHROMA_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#elif defined(__GNUC__) && (!defined(__clang__) || __clang_major__ >= 14)
#define HYPERCHROMA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HYPERCHROMA_CLONES
#endif

// HYPERCHROMA_CLONES_NO_FMA: the same for AVX2 and the baseline only. Neither has FMA, so a product and a sum
// round separately, as in the code compiled once for the baseline: for kernels whose results must equal
// another kernel's bit for bit (resample.hpp's sums in Pillow's order).
#if defined(HYPERCHROMA_NO_CLONES) || defined(HYPERCHROMA_NO_CLONES_) || !defined(__x86_64__) || \
    !defined(__ELF__) || !defined(__linux__)
#define HYPERCHROMA_CLONES_NO_FMA
#elif defined(__GNUC__) && (!defined(__clang__) || __clang_major__ >= 14)
#define HYPERCHROMA_CLONES_NO_FMA __attribute__((target_clones("avx2", "default")))
#else
#define HYPERCHROMA_CLONES_NO_FMA
#endif

// Intrinsics inside functions marked __attribute__((target(...))), picked at run time with __builtin_cpu_supports:
// x86-64 GCC or Clang >= 8, and off where the clones are off (sanitizer builds test the portable code).
#if !defined(HYPERCHROMA_NO_CLONES) && !defined(HYPERCHROMA_NO_CLONES_) && defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 8) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 8))
#define HYPERCHROMA_TARGET_INTRINSICS 1
#include <immintrin.h>
#else
#define HYPERCHROMA_TARGET_INTRINSICS 0
#endif

// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_epi32(), which -Wall reports as uninitialized
// once they are inlined into a caller (GCC bug 105593): the AVX-512 functions sit between these two.
#if defined(__GNUC__) && !defined(__clang__)
#define HYPERCHROMA_AVX512_BEGIN                                   \
    _Pragma("GCC diagnostic push")                                 \
    _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")          \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define HYPERCHROMA_AVX512_END _Pragma("GCC diagnostic pop")
#else
#define HYPERCHROMA_AVX512_BEGIN
#define HYPERCHROMA_AVX512_END
#endif

// A prefetch hint for reading (a no-op where the compiler has none), and the index of the lowest set bit of a
// non-zero 64-bit word: small helpers the hash table, the neighbour index, the sorted index and unique_keys share.
#include <cstdint>
#if defined(__GNUC__) || defined(__clang__)
#define HYPERCHROMA_PREFETCH(p) __builtin_prefetch(static_cast<const void*>(p), 0, 3)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define HYPERCHROMA_PREFETCH(p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0)
#else
#define HYPERCHROMA_PREFETCH(p) ((void)0)
#endif
#if defined(_MSC_VER)
#include <intrin.h>
#endif

namespace hyperchroma {
namespace detail {
inline int ctz64(std::uint64_t x) {  // x != 0
#if defined(_MSC_VER)
    unsigned long i;
    _BitScanForward64(&i, x);
    return static_cast<int>(i);
#else
    return __builtin_ctzll(x);
#endif
}
}  // namespace detail
}  // namespace hyperchroma
