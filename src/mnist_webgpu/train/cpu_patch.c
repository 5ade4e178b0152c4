/* Run the parts of one tinygrad CPU kernel on several cores at once.

   tinygrad splits a large CPU kernel into parts (its THREAD opt: a `core_id` argument
   picks the part) but then calls the parts one after another on one thread. pool_run
   hands the parts to this thread and to helper threads started once, and returns when
   every part has run. cpu_patch.py compiles this file with clang and calls it through ctypes.

   A part is claimed by a compare-and-swap on `ticket` (job generation << 32 | next part),
   so a helper that wakes late can never run a part of a newer job with an older job's
   arguments. Helpers spin briefly between jobs (the next kernel is usually tens of
   microseconds away), then yield, then sleep on a condition variable. */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_ARGS 32
#define SPIN_NS 20000
#define YIELD_NS 200000

#define U8 uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t
#define A8(a, o) a[o], a[o + 1], a[o + 2], a[o + 3], a[o + 4], a[o + 5], a[o + 6], a[o + 7]
/* extra arguments are harmless in the C calling convention; tinygrad's own worker does the same */
typedef void (*kernel_fn)(U8, U8, U8, U8);

static struct {
  kernel_fn fn;
  uint64_t args[MAX_ARGS];
  int parts, slot;
} job;
static _Atomic uint64_t ticket;
static atomic_int parts_done, sleepers;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int helpers_started;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* one turn of a wait loop that started at `start`: pause, or yield the core once waiting is long */
static void wait_turn(uint64_t start) {
  if (now_ns() - start < SPIN_NS) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

static uint32_t generation(uint64_t t) { return (uint32_t)(t >> 32); }

static void run_parts(uint32_t gen) {
  uint64_t t = atomic_load(&ticket);
  for (;;) {
    if (generation(t) != gen || (int)(uint32_t)t >= job.parts) return;
    if (!atomic_compare_exchange_weak(&ticket, &t, t + 1)) continue;
    /* the job cannot change while a claimed part is unfinished */
    uint64_t a[MAX_ARGS];
    memcpy(a, job.args, sizeof a);
    a[job.slot] = (uint32_t)t;
    job.fn(A8(a, 0), A8(a, 8), A8(a, 16), A8(a, 24));
    atomic_fetch_add(&parts_done, 1);
    t = atomic_load(&ticket);
  }
}

static void *helper(void *unused) {
  (void)unused;
  uint32_t seen = 0; /* not the current generation: a job posted before this thread ran is still its job */
  for (;;) {
    uint64_t start = now_ns();
    while (generation(atomic_load(&ticket)) == seen) {
      if (now_ns() - start < YIELD_NS) {
        wait_turn(start);
        continue;
      }
      pthread_mutex_lock(&lock);
      atomic_fetch_add(&sleepers, 1);
      while (generation(atomic_load(&ticket)) == seen) pthread_cond_wait(&wake, &lock);
      atomic_fetch_sub(&sleepers, 1);
      pthread_mutex_unlock(&lock);
    }
    seen = generation(atomic_load(&ticket));
    run_parts(seen);
  }
  return 0;
}

/* start `helpers` threads once; returns 0, or -1 if a thread could not be started */
int pool_start(int helpers) {
  for (; helpers_started < helpers; helpers_started++) {
    pthread_t thread;
    if (pthread_create(&thread, 0, helper, 0)) return -1;
    pthread_detach(thread);
  }
  return 0;
}

/* run parts 0..parts-1 of kernel `fn`, whose part number is argument `slot`; one caller at a time */
void pool_run(uint64_t fn, int parts, int slot, const uint64_t *args, int nargs) {
  job.fn = (kernel_fn)fn;
  memset(job.args, 0, sizeof job.args);
  memcpy(job.args, args, (size_t)nargs * sizeof *args);
  job.parts = parts;
  job.slot = slot;
  atomic_store(&parts_done, 0);
  uint32_t gen = generation(atomic_load(&ticket)) + 1;
  atomic_store(&ticket, (uint64_t)gen << 32);
  if (atomic_load(&sleepers)) {
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
  }
  run_parts(gen);
  uint64_t start = now_ns();
  while (atomic_load(&parts_done) < parts) wait_turn(start);
}
