/* How many threads cgc's compiled loops start: OpenMP's choice, except in a process forked
   after cgc had started a team.  GNU OpenMP's thread pool does not survive fork(): a child
   whose forking thread had a pool hangs in its next parallel region of more than one thread
   (multiprocessing's default start method, DataLoader workers, pre-fork servers).  A team of
   one never touches the pool, so such a child runs every loop on its own thread; libgomp
   offers no way back to threads in that process.  This header is compiled into one
   extension (cgc.native.threads), so its state is the process's; the others cimport
   team_size from it. */
#ifndef CGC_THREADS_H
#define CGC_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif
#ifndef _WIN32
#include <pthread.h>
#endif

static volatile int cgc_team_started = 0;
static volatile int cgc_forked_single = 0;

static void cgc_threads_after_fork_child(void) {
    if (cgc_team_started)
        cgc_forked_single = 1;
}

/* 0 on success: registers the at-fork handler (pthread_atfork covers every fork, from
   Python or from C). */
static int cgc_threads_install(void) {
#ifndef _WIN32
    return pthread_atfork(NULL, NULL, cgc_threads_after_fork_child);
#else
    return 0;
#endif
}

/* The threads a parallel region may use now, without starting one. */
static int cgc_max_threads(void) {
#ifdef _OPENMP
    int n;
    if (cgc_forked_single)
        return 1;
    n = omp_get_max_threads();
    return n > 1 ? n : 1;
#else
    return 1;
#endif
}

/* The same, for a region about to start: remembers that a team may now exist. */
static int cgc_team_size(void) {
    int n = cgc_max_threads();
    if (n > 1)
        cgc_team_started = 1;
    return n;
}

static int cgc_forked_single_thread(void) { return cgc_forked_single; }

#endif
