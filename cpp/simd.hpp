// Run-time SIMD dispatch without -march flags: GCC/Clang compile a function marked HYPERCHROMA_CLONES twice
// (AVX2 and baseline) and pick one at load time, so plain loops get auto-vectorized for AVX2 where it exists.
#pragma once

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__linux__) && \
    !defined(__SANITIZE_ADDRESS__)
#define HYPERCHROMA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HYPERCHROMA_CLONES
#endif
