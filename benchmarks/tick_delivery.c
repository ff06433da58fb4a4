/*
 * Where do a thread's CPU-timer signals land inside a stretch of CPU, and which expirations do
 * they carry? The measurement behind the CPU-timer engine's weights (docs/hook-free-engine.md).
 *
 *     cc -O2 -o /tmp/tick_delivery benchmarks/tick_delivery.c && /tmp/tick_delivery 1000000 1000
 *
 * Arguments: the timer's interval (ns of the thread's CPU) and a sleep (µs) before each of 2,000
 * stretches of 10 ms of CPU. The thread has a timer on its own CPU clock (SIGEV_THREAD_ID); the
 * handler reads the thread's CPU clock and counts, per millisecond since the stretch began, the
 * signals and the expirations they carried (1 + si_overrun). Printed: signals/expirations for
 * milliseconds 0 to 10.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 11

static volatile long long stretch_start;
static volatile int in_stretch;
static long long signals[BUCKETS];
static long long expirations[BUCKETS];

static long long
thread_cpu_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return now.tv_sec * 1000000000LL + now.tv_nsec;
}

static void
on_signal(int signo, siginfo_t *info, void *context)
{
    (void)signo;
    (void)context;
    if (!in_stretch) {
        return;
    }
    long long ms = (thread_cpu_ns() - stretch_start) / 1000000;
    if (ms < 0) {
        ms = 0;
    }
    if (ms >= BUCKETS) {
        ms = BUCKETS - 1;
    }
    signals[ms]++;
    expirations[ms] += 1 + info->si_overrun;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s INTERVAL_NS SLEEP_US\n", argv[0]);
        return 2;
    }
    long long interval = atoll(argv[1]);
    int sleep_us = atoi(argv[2]);
    struct sigaction action = {0};
    action.sa_sigaction = on_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGPROF, &action, NULL);
    clockid_t clock;
    pthread_getcpuclockid(pthread_self(), &clock);
    struct sigevent event = {0};
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGPROF;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    timer_create(clock, &event, &timer);
    struct itimerspec spec = {{interval / 1000000000LL, interval % 1000000000LL},
                              {interval / 1000000000LL, interval % 1000000000LL}};
    timer_settime(timer, 0, &spec, NULL);
    for (int round = 0; round < 2000; round++) {
        if (sleep_us) {
            usleep(sleep_us);
        }
        stretch_start = thread_cpu_ns();
        in_stretch = 1;
        while (thread_cpu_ns() - stretch_start < 10000000) {
        }
        in_stretch = 0;
    }
    for (int k = 0; k < BUCKETS; k++) {
        printf("%lld/%lld ", signals[k], expirations[k]);
    }
    printf("\n");
    return 0;
}
