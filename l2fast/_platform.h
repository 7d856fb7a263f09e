/* What the kernels run on: OpenMP queries that compile with or without
 * OpenMP, the runtime library loaded, the build, and the SIMD loops chosen. */
#ifndef L2FAST_PLATFORM_H
#define L2FAST_PLATFORM_H

#ifdef _OPENMP
#include <omp.h>
#define L2F_OPENMP_SPEC _OPENMP
#else
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#define L2F_OPENMP_SPEC 0
#endif

#if defined(_OPENMP) && (defined(__linux__) || defined(__APPLE__))
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
/* Path of the shared library that provides the OpenMP runtime actually loaded. */
static const char *l2f_openmp_library(void) {
    Dl_info info;
    if (dladdr((void *)&omp_get_max_threads, &info) && info.dli_fname)
        return info.dli_fname;
    return "";
}
#elif defined(_OPENMP) && defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
static const char *l2f_openmp_library(void) {
    static char path[MAX_PATH];
    HMODULE h;
    if (GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                           GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                           (LPCSTR)&omp_get_max_threads, &h) &&
        GetModuleFileNameA(h, path, sizeof path))
        return path;
    return "";
}
#else
static const char *l2f_openmp_library(void) { return ""; }
#endif

/* A child made by fork() after a parallel kernel inherits a team (_pool.h)
 * whose helper threads do not exist in it; in such a child the kernels run
 * on the calling thread.  A child forked before any parallel kernel starts
 * its own helpers. */
#if defined(_OPENMP) && !defined(_WIN32)
#include <pthread.h>
static volatile int l2f_in_fork_child = 0;
static volatile int l2f_team_started = 0;   /* a kernel has run a thread team */
static void l2f_mark_child(void) { if (l2f_team_started) l2f_in_fork_child = 1; }
static int l2f_watch_fork(void) { return pthread_atfork(NULL, NULL, l2f_mark_child); }
#else
static volatile int l2f_in_fork_child = 0;
static volatile int l2f_team_started = 0;
static int l2f_watch_fork(void) { return 0; }
#endif

/* Threads that ran the last kernel call (a diagnostic; benign races). */
static int l2f_last_team = 0;
static inline void l2f_note_team(int n) {
    l2f_last_team = n;
    if (n > 1)
        l2f_team_started = 1;
}

/* The most threads a team may have (OMP_THREAD_LIMIT). */
static inline int l2f_thread_limit(void) {
#ifdef _OPENMP
    return omp_get_thread_limit();
#else
    return 1;
#endif
}

/* The loops of _loops.h are compiled as SIMD clones (GCC target_clones, an
 * ifunc the loader resolves) on x86-64 Linux with GCC 12 or later, which
 * knows the x86-64-v3/v4 levels.  L2F_NO_CLONES turns them off. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(L2F_NO_CLONES) && __GNUC__ >= 12
#define L2F_HAVE_CLONES 1
#endif

/* The widest x86 SIMD extension the compiler was allowed to use. */
#if defined(__AVX512F__)
#define L2F_BUILD_SIMD "AVX512F"
#elif defined(__AVX2__)
#define L2F_BUILD_SIMD "AVX2"
#elif defined(__AVX__)
#define L2F_BUILD_SIMD "AVX"
#elif defined(__SSE2__) || defined(_M_X64)
#define L2F_BUILD_SIMD "SSE2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define L2F_BUILD_SIMD "NEON"
#else
#define L2F_BUILD_SIMD "none"
#endif

/* Which clone of the loops of _loops.h this CPU runs. */
static const char *l2f_simd_dispatch(void) {
#ifdef L2F_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "x86-64-v3 (AVX2, FMA)";
    return "baseline (" L2F_BUILD_SIMD ")";
#else
    return L2F_BUILD_SIMD;
#endif
}

#ifndef L2FAST_BUILD_OPENMP
#define L2FAST_BUILD_OPENMP 0
#endif
#ifndef L2FAST_BUILD_COMPILER
#define L2FAST_BUILD_COMPILER ""
#endif
#ifndef L2FAST_BUILD_CFLAGS
#define L2FAST_BUILD_CFLAGS ""
#endif
#ifndef L2FAST_BUILD_PLATFORM
#define L2FAST_BUILD_PLATFORM ""
#endif

#endif
