/* The thread team of the kernels.
 *
 * A call is a job of n items.  The calling thread starts on the items at
 * once; helper threads join as they wake, and each item goes to whoever
 * claims it first (one compare-and-swap on a ticket that holds the job's
 * generation and the items left).  The call returns when every item is
 * done, so it waits only for items a helper has actually claimed -- never
 * for a helper that has not been scheduled yet.  When another process keeps
 * the cores busy, a late helper costs nothing: the caller does its share,
 * and the helper, when it wakes, finds no items left.
 *
 * Helpers spin a short while after a job (back-to-back calls find them
 * awake), then sleep on a condition variable -- at once while the machine
 * shows signs of being busy (a spinning helper descheduled, a caller kept
 * waiting on a claimed item): spinning there burns the time slices that
 * would run the next job, and a helper that slept is scheduled promptly
 * when woken.  Results do not depend on who runs an item: every item
 * writes its own slots.
 *
 * One call holds the team at a time; a call made from another Python thread
 * meanwhile runs on its own thread.  POSIX threads where available; else an
 * OpenMP loop; else serial.
 */
#ifndef L2FAST_POOL_H
#define L2FAST_POOL_H

#include <stdint.h>
#include "_platform.h"

typedef void (*l2f_item_fn)(void *ctx, int64_t k);

/* How long an idle helper spins before it sleeps, and how long the caller
 * spins on claimed items before it yields the CPU (microseconds). */
#ifndef L2F_HELPER_SPIN_US
#define L2F_HELPER_SPIN_US 100
#endif
#ifndef L2F_BUSY_HOLD_US
#define L2F_BUSY_HOLD_US 200000   /* how long a sign of a busy machine counts */
#endif
#ifndef L2F_GAP_US
#define L2F_GAP_US 30             /* a pause in a spin loop longer than this: descheduled */
#endif
#ifndef L2F_CALLER_SPIN_US
#define L2F_CALLER_SPIN_US 50
#endif

/* What the parallel calls did (written by the caller holding the team):
 * jobs, items, items run by helpers, seconds callers waited on items that
 * helpers had claimed, and the longest such wait. */
static struct { int64_t jobs, items, helped; double wait_s, max_wait_s; } l2f_pool_stats;

static void l2f_run_serial(l2f_item_fn fn, void *ctx, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        fn(ctx, k);
}

#if defined(_OPENMP) && !defined(_WIN32) && (defined(__GNUC__) || defined(__clang__))
#define L2F_POOL_PTHREADS 1
#include <pthread.h>
#include <sched.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define l2f_cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define l2f_cpu_relax() __asm__ __volatile__("yield")
#else
#define l2f_cpu_relax() ((void)0)
#endif

#define L2F_ALOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define L2F_ASTORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

static struct {
    uint64_t ticket;          /* (generation << 32) | items left to claim */
    int64_t done;             /* items finished in the current job */
    int64_t nitems;
    uint32_t gen;             /* generation of the latest job: what helpers wait on */
    int wanted;               /* helpers 0 .. wanted-1 may join the current job */
    l2f_item_fn fn;
    void *ctx;
    int started;              /* helper threads created */
    int sleepers;             /* helpers asleep on cv */
    int busy;                 /* a call holds the team */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} l2f_pool = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
              PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static inline double l2f_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* Claim one item of job `gen`: its index, or -1 when none is left. */
static inline int64_t l2f_claim(uint32_t gen) {
    uint64_t v = L2F_ALOAD(&l2f_pool.ticket);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (uint32_t)v == 0)
            return -1;
        if (__atomic_compare_exchange_n(&l2f_pool.ticket, &v, v - 1, 1,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            /* the job cannot end before this item is done: its fields hold */
            return l2f_pool.nitems - (int64_t)(uint32_t)v;
    }
}

/* Run items of job `gen` until none is left to claim; returns how many. */
static int64_t l2f_work(uint32_t gen) {
    int64_t k, ran = 0;
    while ((k = l2f_claim(gen)) >= 0) {
        l2f_pool.fn(l2f_pool.ctx, k);
        __atomic_add_fetch(&l2f_pool.done, 1, __ATOMIC_RELEASE);
        ran++;
    }
    return ran;
}

/* Until this time (us) the machine counts as busy: helpers sleep at once
 * instead of spinning.  A spinning helper that finds it was descheduled, or
 * a caller kept waiting on a claimed item, sets it.  Spinning threads on a
 * busy machine burn the time slices that would run the next job's items. */
static int64_t l2f_busy_until;

static inline void l2f_note_busy(double now) {
    __atomic_store_n(&l2f_busy_until, (int64_t)now + L2F_BUSY_HOLD_US, __ATOMIC_RELAXED);
}

/* Wait for a job newer than `seen`: spin (unless the machine is busy), then
 * sleep.  Returns its generation. */
static uint32_t l2f_wait_job(uint32_t seen) {
    uint32_t g;
    double t0 = l2f_now_us(), last = t0, now;
    if ((int64_t)t0 >= __atomic_load_n(&l2f_busy_until, __ATOMIC_RELAXED)) {
        for (unsigned i = 1;; i++) {
            if ((g = L2F_ALOAD(&l2f_pool.gen)) != seen)
                return g;
            l2f_cpu_relax();
            if ((i & 63) != 0)
                continue;
            now = l2f_now_us();
            if (now - last > L2F_GAP_US) {          /* descheduled while spinning */
                l2f_note_busy(now);
                break;
            }
            if (now - t0 > L2F_HELPER_SPIN_US)
                break;
            last = now;
        }
    }
    pthread_mutex_lock(&l2f_pool.mu);
    __atomic_add_fetch(&l2f_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    while ((g = __atomic_load_n(&l2f_pool.gen, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&l2f_pool.cv, &l2f_pool.mu);
    __atomic_sub_fetch(&l2f_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&l2f_pool.mu);
    return g;
}

static void *l2f_helper(void *arg) {
    int id = (int)(intptr_t)arg;
    uint32_t seen = 0;                    /* no job has generation 0 */
    for (;;) {
        seen = l2f_wait_job(seen);
        if (id < L2F_ALOAD(&l2f_pool.wanted))
            l2f_work(seen);
    }
    return NULL;
}

/* Create helpers up to `want`; returns how many exist. */
static int l2f_start_helpers(int want) {
    pthread_attr_t attr;
    pthread_t th;
    if (pthread_attr_init(&attr) != 0)
        return l2f_pool.started;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    while (l2f_pool.started < want &&
           pthread_create(&th, &attr, l2f_helper, (void *)(intptr_t)l2f_pool.started) == 0)
        l2f_pool.started++;
    pthread_attr_destroy(&attr);
    return l2f_pool.started;
}

/* Wait until every claimed item of the job is done. */
static void l2f_wait_done(int64_t n) {
    double t0 = l2f_now_us();
    for (unsigned i = 1; L2F_ALOAD(&l2f_pool.done) != n; i++) {
        if ((i & 63) == 0 && l2f_now_us() - t0 > L2F_CALLER_SPIN_US)
            sched_yield();       /* a claimed item's helper may need this CPU */
        else
            l2f_cpu_relax();
    }
}

/* Run fn(ctx, k) for k in [0, n) on the caller and up to nthreads - 1
 * helpers.  Returns the threads offered the job (1: it ran serially). */
static int l2f_pool_run(l2f_item_fn fn, void *ctx, int64_t n, int nthreads) {
    int expected = 0;
    uint32_t g;
    if (nthreads <= 1 || n <= 1 || n >= ((int64_t)1 << 32) ||
        !__atomic_compare_exchange_n(&l2f_pool.busy, &expected, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        l2f_run_serial(fn, ctx, n);
        return 1;
    }
    if (l2f_start_helpers(nthreads - 1) < nthreads - 1)
        nthreads = l2f_pool.started + 1;
    l2f_pool.fn = fn;
    l2f_pool.ctx = ctx;
    l2f_pool.nitems = n;
    __atomic_store_n(&l2f_pool.done, 0, __ATOMIC_RELAXED);
    l2f_pool.wanted = nthreads - 1;
    g = l2f_pool.gen + 1;
    if (g == 0)
        g = 1;
    L2F_ASTORE(&l2f_pool.ticket, ((uint64_t)g << 32) | (uint64_t)n);
    L2F_ASTORE(&l2f_pool.gen, g);
    if (__atomic_load_n(&l2f_pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&l2f_pool.mu);
        pthread_cond_broadcast(&l2f_pool.cv);
        pthread_mutex_unlock(&l2f_pool.mu);
    }
    int64_t mine = l2f_work(g);
    double t0 = l2f_now_us(), waited;
    l2f_wait_done(n);
    waited = (l2f_now_us() - t0) * 1e-6;
    if (waited > 2 * L2F_CALLER_SPIN_US * 1e-6)
        l2f_note_busy(t0);
    l2f_pool_stats.jobs++;
    l2f_pool_stats.items += n;
    l2f_pool_stats.helped += n - mine;
    l2f_pool_stats.wait_s += waited;
    if (waited > l2f_pool_stats.max_wait_s)
        l2f_pool_stats.max_wait_s = waited;
    __atomic_store_n(&l2f_pool.busy, 0, __ATOMIC_RELEASE);
    return nthreads;
}

#elif defined(_OPENMP)
static int l2f_pool_run(l2f_item_fn fn, void *ctx, int64_t n, int nthreads) {
    int64_t k;
    if (nthreads <= 1 || n <= 1) {
        l2f_run_serial(fn, ctx, n);
        return 1;
    }
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (k = 0; k < n; k++)
        fn(ctx, k);
    return nthreads;
}
#else
static int l2f_pool_run(l2f_item_fn fn, void *ctx, int64_t n, int nthreads) {
    (void)nthreads;
    l2f_run_serial(fn, ctx, n);
    return 1;
}
#endif

#endif
