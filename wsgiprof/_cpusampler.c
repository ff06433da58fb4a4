/*
 * _cpusampler: samples the Python stack of a thread on that thread's own CPU clock.
 *
 * Each profiled thread gets a POSIX timer on its CPU-time clock (pthread_getcpuclockid) that
 * sends SIGPROF to that very thread (SIGEV_THREAD_ID) every `interval` nanoseconds of CPU it
 * uses. The signal handler runs on the sampled thread, at the point where the timer expired, and
 * copies the frame chain (the address of each frame's code object) into a buffer of the thread's
 * own. It takes no lock, allocates nothing, calls no Python API, and reads interpreter memory
 * only through process_vm_readv on its own process, which fails with EFAULT instead of crashing
 * on a pointer that is no longer valid.
 *
 * So a sample is taken only while the thread is on a CPU (GIL waits, run-queue waits and blocking
 * calls advance no CPU clock), C work that releases the GIL is charged to the Python line that
 * called it, and no hook runs on any Python call.
 *
 * Later, on the same thread and with the GIL, stop() hands the samples to Python; code_info()
 * turns an address into names, again through safe reads only, since a code object seen in a
 * sample may have been freed since (code_key() checks a cached one with a single read).
 *
 * The timer of a thread stays armed between requests (the handler drops samples taken outside
 * one): disarming it at each request's end would lose the samples whose expiry falls on the
 * last tick of a short request, so short requests would be under-sampled. Per-thread states are
 * never freed, only reused, so a late signal never reads freed memory; a thread's timer is
 * deleted when the thread exits (a pthread key destructor) and all of them by shutdown().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__)
#define CPUSAMPLER_SUPPORTED 1
#endif

#ifdef CPUSAMPLER_SUPPORTED

#if PY_VERSION_HEX >= 0x030B0000
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"
#else
#include <frameobject.h>
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define SAMPLE_SIGNAL SIGPROF
#define MAX_STATES 4096
#define MAX_DEPTH 512
#define MAX_STEPS 4096
#define FOUND_MARKER 1
#define TRUNCATED 2
#define DEFAULT_FRAMES 16384
#define DEFAULT_SAMPLES 4096
#define TABLE_SIZE 8192 /* a power of two, above DEFAULT_SAMPLES */
#define MAX_STRING 4096
/* Our timers carry this tag in the high bits of sival_ptr, the state's index in the low bits. */
#define TIMER_TAG ((uintptr_t)0x5750524fUL << 32)
#define TAG_MASK ((uintptr_t)0xffffffffUL << 32)

typedef struct {
    size_t index; /* in `states`, and in the low bits of its timer's sival_ptr */
    pid_t pid;
    pid_t tid;
    int in_use;
    int has_timer;
    timer_t timer;
    long long interval;
    PyThreadState *tstate;
    uintptr_t marker; /* the code object of the request's root frame: the walk stops there */
    volatile sig_atomic_t active;
    /* The distinct stacks sampled in the current request and their timer expirations: a stack is
       `depth` code addresses from `start` in `frames`, leaf first; `table` finds a stack already
       seen (a hash table of sample index + 1, 0 when empty), so a long request in a few hot
       stacks needs little room. */
    uintptr_t *frames;
    size_t frames_cap;
    volatile size_t frames_len;
    uint32_t *sample_start;
    uint16_t *sample_depth;
    uint32_t *sample_signals; /* signals that found this stack */
    uint32_t *sample_weight;  /* timer expirations they carried */
    uint8_t *sample_flags;
    uint32_t *sample_slot;
    uint32_t *table;
    size_t samples_cap;
    volatile size_t samples_len;
    volatile uint64_t lost; /* expirations in a request that found the buffer full */
    unsigned int seed;
} sampler_state;

static sampler_state *states[MAX_STATES];
static volatile size_t n_states;
static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t state_key;
static int handler_installed;
static struct sigaction previous_action;

static pid_t
current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static int
read_memory(pid_t pid, void *destination, const void *source, size_t size)
{
    struct iovec local = {destination, size};
    struct iovec remote = {(void *)source, size};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)size ? 0 : -1;
}

/* -- the signal handler ------------------------------------------------------------------------ */

static void
push_frame(sampler_state *st, size_t *depth, uintptr_t code)
{
    st->frames[st->frames_len + *depth] = code;
    (*depth)++;
}

/* Copy the code addresses of the thread's frames, leaf first, up to the marker frame. */
static size_t
walk(sampler_state *st, size_t room, int *flags)
{
    pid_t pid = st->pid;
    size_t depth = 0;
    size_t limit = room < MAX_DEPTH ? room : MAX_DEPTH;
    size_t steps = 0;
    uintptr_t marker = st->marker;
#if PY_VERSION_HEX >= 0x030D0000
    _PyInterpreterFrame *frame = st->tstate->current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
    _PyCFrame *cframe = st->tstate->cframe;
    _PyInterpreterFrame *frame = NULL;
    if (cframe == NULL || read_memory(pid, &frame, &cframe->current_frame, sizeof frame)) {
        return 0;
    }
#else
    PyFrameObject *frame = st->tstate->frame;
#endif
    while (frame != NULL && steps++ < MAX_STEPS) {
#if PY_VERSION_HEX >= 0x030B0000
        _PyInterpreterFrame copy;
        if (read_memory(pid, &copy, frame, offsetof(_PyInterpreterFrame, localsplus))) {
            break;
        }
#if PY_VERSION_HEX >= 0x030D0000
        uintptr_t code = (uintptr_t)copy.f_executable;
#else
        uintptr_t code = (uintptr_t)copy.f_code;
#endif
#if PY_VERSION_HEX >= 0x030C0000
        int shim = copy.owner == FRAME_OWNED_BY_CSTACK;
#else
        int shim = 0;
#endif
        if (code == marker) {
            *flags |= FOUND_MARKER;
            break;
        }
        if (!shim && code != 0) {
            if (depth < limit) {
                push_frame(st, &depth, code);
            }
            else {
                *flags |= TRUNCATED;
            }
        }
        frame = copy.previous;
#else
        PyFrameObject copy;
        if (read_memory(pid, &copy, frame, sizeof copy)) {
            break;
        }
        if ((uintptr_t)copy.f_code == marker) {
            *flags |= FOUND_MARKER;
            break;
        }
        if (copy.f_code != NULL) {
            if (depth < limit) {
                push_frame(st, &depth, (uintptr_t)copy.f_code);
            }
            else {
                *flags |= TRUNCATED;
            }
        }
        frame = copy.f_back;
#endif
    }
    return depth;
}

static void
take_sample(sampler_state *st, uint32_t weight)
{
    if (!st->active) {
        return;
    }
    size_t index = st->samples_len;
    size_t start = st->frames_len;
    if (index >= st->samples_cap || start >= st->frames_cap) {
        st->lost += weight;
        return;
    }
    int flags = 0;
    size_t room = st->frames_cap - start;
    size_t depth = walk(st, room, &flags);
    if ((flags & TRUNCATED) && room < MAX_DEPTH) {
        st->lost += weight;
        return;
    }
    uintptr_t *walked = st->frames + start;
    uint64_t hash = 1469598103934665603ULL ^ (uint64_t)flags;
    for (size_t k = 0; k < depth; k++) {
        hash = (hash ^ (uint64_t)walked[k]) * 1099511628211ULL;
    }
    size_t slot = (size_t)(hash ^ (hash >> 29)) & (TABLE_SIZE - 1);
    for (size_t probe = 0; probe < TABLE_SIZE; probe++) {
        uint32_t entry = st->table[slot];
        if (entry == 0) {
            break;
        }
        size_t seen = entry - 1;
        if (st->sample_depth[seen] == depth && st->sample_flags[seen] == flags) {
            const uintptr_t *other = st->frames + st->sample_start[seen];
            size_t k = 0;
            while (k < depth && other[k] == walked[k]) {
                k++;
            }
            if (k == depth) {
                st->sample_signals[seen] += 1;
                st->sample_weight[seen] += weight;
                return;
            }
        }
        slot = (slot + 1) & (TABLE_SIZE - 1);
    }
    st->table[slot] = (uint32_t)index + 1;
    st->sample_slot[index] = (uint32_t)slot;
    st->sample_start[index] = (uint32_t)start;
    st->sample_depth[index] = (uint16_t)depth;
    st->sample_signals[index] = 1;
    st->sample_weight[index] = weight;
    st->sample_flags[index] = (uint8_t)flags;
    st->frames_len = start + depth;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    st->samples_len = index + 1;
}

static void
chain(int signo, siginfo_t *info, void *context)
{
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction != NULL) {
            previous_action.sa_sigaction(signo, info, context);
        }
    }
    else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(signo);
    }
}

static void
on_signal(int signo, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    uintptr_t value = info != NULL ? (uintptr_t)info->si_value.sival_ptr : 0;
    if (info != NULL && info->si_code == SI_TIMER && (value & TAG_MASK) == TIMER_TAG) {
        size_t index = (size_t)(value & ~TAG_MASK);
        if (index < n_states) {
            sampler_state *st = states[index];
            if (st != NULL && st->in_use && st->tid == current_tid()) {
                int overrun = info->si_overrun > 0 ? info->si_overrun : 0;
                take_sample(st, 1 + (uint32_t)overrun);
            }
        }
    }
    else {
        chain(signo, info, context);
    }
    errno = saved_errno;
}

/* -- per-thread states -------------------------------------------------------------------------- */

static void
delete_timer(sampler_state *st)
{
    if (st->has_timer && st->pid == getpid()) {
        timer_delete(st->timer);
    }
    st->has_timer = 0;
}

static void
release_state(void *pointer)
{
    /* The thread exits: its timer goes, its state is kept for the next thread. */
    sampler_state *st = pointer;
    pthread_mutex_lock(&states_lock);
    st->active = 0;
    delete_timer(st);
    st->tid = 0;
    st->in_use = 0;
    pthread_mutex_unlock(&states_lock);
}

static void
after_fork_in_child(void)
{
    /* Timers are not inherited; the other threads are gone. */
    pthread_mutex_init(&states_lock, NULL);
    sampler_state *mine = pthread_getspecific(state_key);
    for (size_t i = 0; i < n_states; i++) {
        sampler_state *st = states[i];
        st->has_timer = 0;
        st->active = 0;
        if (st != mine) {
            st->in_use = 0;
            st->tid = 0;
        }
    }
    if (mine != NULL) {
        mine->pid = getpid();
        mine->tid = current_tid();
    }
}

static sampler_state *
new_state(void)
{
    sampler_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return NULL;
    }
    st->frames_cap = DEFAULT_FRAMES;
    st->samples_cap = DEFAULT_SAMPLES;
    st->frames = calloc(st->frames_cap, sizeof *st->frames);
    st->sample_start = calloc(st->samples_cap, sizeof *st->sample_start);
    st->sample_depth = calloc(st->samples_cap, sizeof *st->sample_depth);
    st->sample_weight = calloc(st->samples_cap, sizeof *st->sample_weight);
    st->sample_signals = calloc(st->samples_cap, sizeof *st->sample_signals);
    st->sample_flags = calloc(st->samples_cap, sizeof *st->sample_flags);
    st->sample_slot = calloc(st->samples_cap, sizeof *st->sample_slot);
    st->table = calloc(TABLE_SIZE, sizeof *st->table);
    if (!st->frames || !st->sample_start || !st->sample_depth || !st->sample_weight ||
        !st->sample_signals || !st->sample_flags || !st->sample_slot || !st->table) {
        free(st->frames);
        free(st->sample_start);
        free(st->sample_depth);
        free(st->sample_weight);
        free(st->sample_signals);
        free(st->sample_flags);
        free(st->sample_slot);
        free(st->table);
        free(st);
        return NULL;
    }
    return st;
}

/* The calling thread's state, made or reused; NULL with a Python error set. */
static sampler_state *
thread_state(void)
{
    sampler_state *st = pthread_getspecific(state_key);
    pid_t pid = getpid();
    pid_t tid = current_tid();
    if (st != NULL && st->in_use && st->pid == pid && st->tid == tid) {
        return st;
    }
    pthread_mutex_lock(&states_lock);
    size_t index = n_states;
    for (size_t i = 0; i < n_states; i++) {
        if (!states[i]->in_use) {
            index = i;
            break;
        }
    }
    if (index == n_states) {
        if (n_states >= MAX_STATES) {
            pthread_mutex_unlock(&states_lock);
            PyErr_SetString(PyExc_RuntimeError, "too many threads are sampled at once");
            return NULL;
        }
        sampler_state *made = new_state();
        if (made == NULL) {
            pthread_mutex_unlock(&states_lock);
            PyErr_NoMemory();
            return NULL;
        }
        made->index = index;
        states[index] = made;
        __atomic_store_n(&n_states, index + 1, __ATOMIC_SEQ_CST);
    }
    st = states[index];
    st->active = 0;
    st->has_timer = 0;
    st->pid = pid;
    st->tid = tid;
    st->seed = (unsigned int)(tid ^ (uintptr_t)st);
    st->in_use = 1;
    pthread_mutex_unlock(&states_lock);
    if (pthread_setspecific(state_key, st) != 0) {
        release_state(st);
        PyErr_SetString(PyExc_RuntimeError, "pthread_setspecific failed");
        return NULL;
    }
    return st;
}

static int
install_handler(void)
{
    if (handler_installed) {
        return 0;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SAMPLE_SIGNAL, &action, &previous_action) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    handler_installed = 1;
    return 0;
}

static int
arm(sampler_state *st, long long interval)
{
    if (!st->has_timer) {
        clockid_t clock;
        int error = pthread_getcpuclockid(pthread_self(), &clock);
        if (error != 0) {
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SAMPLE_SIGNAL;
        event.sigev_notify_thread_id = st->tid;
        event.sigev_value.sival_ptr = (void *)(TIMER_TAG | (uintptr_t)st->index);
        if (timer_create(clock, &event, &st->timer) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        st->has_timer = 1;
        st->interval = 0;
    }
    if (st->interval != interval) {
        /* The first expiry is uniform over one interval, so that the expected number of samples
           of any stretch of CPU is its length over the interval. */
        long long first = 1 + (long long)(((double)rand_r(&st->seed) / ((double)RAND_MAX + 1.0)) *
                                          (double)interval);
        struct itimerspec spec;
        spec.it_interval.tv_sec = interval / 1000000000LL;
        spec.it_interval.tv_nsec = interval % 1000000000LL;
        spec.it_value.tv_sec = first / 1000000000LL;
        spec.it_value.tv_nsec = first % 1000000000LL;
        if (timer_settime(st->timer, 0, &spec, NULL) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        st->interval = interval;
    }
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SAMPLE_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    return 0;
}

/* -- the module's functions -------------------------------------------------------------------- */

/* Forget the samples of the current request (the handler must not be storing: active is 0). */
static void
clear_samples(sampler_state *st)
{
    for (size_t i = 0; i < st->samples_len; i++) {
        st->table[st->sample_slot[i]] = 0;
    }
    st->frames_len = 0;
    st->samples_len = 0;
    st->lost = 0;
}

static PyObject *
sampler_start(PyObject *module, PyObject *args)
{
    long long interval;
    unsigned long long marker;
    if (!PyArg_ParseTuple(args, "LK", &interval, &marker)) {
        return NULL;
    }
    if (interval < 1000 || interval > 10LL * 1000000000LL) {
        PyErr_SetString(PyExc_ValueError, "interval must be between 1 microsecond and 10 s");
        return NULL;
    }
    if (install_handler() != 0) {
        return NULL;
    }
    sampler_state *st = thread_state();
    if (st == NULL) {
        return NULL;
    }
    /* A profile stopped from another thread left this one active: its samples are dropped. */
    st->active = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    clear_samples(st);
    st->tstate = PyThreadState_Get();
    st->marker = (uintptr_t)marker;
    if (arm(st, interval) != 0) {
        return NULL;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    st->active = 1;
    Py_RETURN_NONE;
}

static PyObject *
sampler_stop(PyObject *module, PyObject *unused)
{
    sampler_state *st = pthread_getspecific(state_key);
    if (st == NULL || !st->in_use || !st->active || st->tid != current_tid()) {
        Py_RETURN_NONE;
    }
    st->active = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    size_t count = st->samples_len;
    PyObject *samples = PyList_New((Py_ssize_t)count);
    if (samples == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        size_t depth = st->sample_depth[i];
        size_t start = st->sample_start[i];
        PyObject *sample = PyTuple_New((Py_ssize_t)(3 + depth));
        if (sample == NULL) {
            Py_DECREF(samples);
            return NULL;
        }
        unsigned long head[3] = {st->sample_signals[i], st->sample_weight[i],
                                 st->sample_flags[i]};
        for (Py_ssize_t k = 0; k < 3; k++) {
            PyObject *item = PyLong_FromUnsignedLong(head[k]);
            if (item == NULL) {
                Py_DECREF(sample);
                Py_DECREF(samples);
                return NULL;
            }
            PyTuple_SET_ITEM(sample, k, item);
        }
        for (size_t k = 0; k < depth; k++) {
            PyObject *item = PyLong_FromUnsignedLongLong(st->frames[start + k]);
            if (item == NULL) {
                Py_DECREF(sample);
                Py_DECREF(samples);
                return NULL;
            }
            PyTuple_SET_ITEM(sample, (Py_ssize_t)(3 + k), item);
        }
        PyList_SET_ITEM(samples, (Py_ssize_t)i, sample);
    }
    PyObject *result = Py_BuildValue("(NK)", samples, (unsigned long long)st->lost);
    clear_samples(st);
    return result;
}

static PyObject *
sampler_shutdown(PyObject *module, PyObject *unused)
{
    /* Delete every timer of this process; the handler stays (a late signal finds no active state). */
    pthread_mutex_lock(&states_lock);
    for (size_t i = 0; i < n_states; i++) {
        states[i]->active = 0;
        delete_timer(states[i]);
    }
    pthread_mutex_unlock(&states_lock);
    Py_RETURN_NONE;
}

static PyObject *
sampler_timers(PyObject *module, PyObject *unused)
{
    size_t count = 0;
    for (size_t i = 0; i < n_states; i++) {
        count += states[i]->has_timer && states[i]->pid == getpid();
    }
    return PyLong_FromSize_t(count);
}

/* -- symbols, through safe reads ------------------------------------------------------------------ */

static PyObject *
read_string(pid_t pid, const void *address)
{
    PyASCIIObject head;
    if (address == NULL || read_memory(pid, &head, address, sizeof head) ||
        head.ob_base.ob_type != &PyUnicode_Type || !head.state.compact || head.length < 0 ||
        head.length > MAX_STRING) {
        return NULL;
    }
    unsigned int kind = head.state.kind;
    if (kind != 1 && kind != 2 && kind != 4) {
        return NULL;
    }
    const char *data = (const char *)address +
                       (head.state.ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject));
    size_t size = (size_t)head.length * kind;
    char buffer[MAX_STRING * 4 + 4];
    if (size > 0 && read_memory(pid, buffer, data, size)) {
        return NULL;
    }
    return PyUnicode_FromKindAndData((int)kind, buffer, head.length);
}

static PyObject *
sampler_code_info(PyObject *module, PyObject *argument)
{
    /* (filename, name, qualname or None, first line) of the code object at an address, or None
       if no code object is there now. */
    uintptr_t address = (uintptr_t)PyLong_AsUnsignedLongLong(argument);
    if (PyErr_Occurred()) {
        return NULL;
    }
    pid_t pid = getpid();
    PyCodeObject code;
    if (address == 0 || read_memory(pid, &code, (void *)address, sizeof code) ||
        Py_TYPE((PyObject *)&code) != &PyCode_Type) {
        Py_RETURN_NONE;
    }
    PyObject *filename = read_string(pid, code.co_filename);
    PyObject *name = read_string(pid, code.co_name);
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *qualname = read_string(pid, code.co_qualname);
#else
    PyObject *qualname = Py_NewRef(Py_None);
#endif
    if (filename == NULL || name == NULL || qualname == NULL) {
        Py_XDECREF(filename);
        Py_XDECREF(name);
        Py_XDECREF(qualname);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NNNi)", filename, name, qualname, code.co_firstlineno);
}

static PyObject *
sampler_code_key(PyObject *module, PyObject *argument)
{
    /* A cheap identity of the code object at an address (one safe read), to check a cached
       symbol: the addresses of its name, qualified name and file name, and its first line. */
    uintptr_t address = (uintptr_t)PyLong_AsUnsignedLongLong(argument);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyCodeObject code;
    if (address == 0 || read_memory(getpid(), &code, (void *)address, sizeof code) ||
        Py_TYPE((PyObject *)&code) != &PyCode_Type) {
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX >= 0x030B0000
    uintptr_t qualname = (uintptr_t)code.co_qualname;
#else
    uintptr_t qualname = 0;
#endif
    return Py_BuildValue("(KKKi)", (unsigned long long)(uintptr_t)code.co_name,
                         (unsigned long long)qualname,
                         (unsigned long long)(uintptr_t)code.co_filename, code.co_firstlineno);
}

static int
sampler_exec(PyObject *module)
{
    static int initialised;
    if (!initialised) {
        if (pthread_key_create(&state_key, release_state) != 0 ||
            pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "cannot set up per-thread sampling state");
            return -1;
        }
        initialised = 1;
    }
    return PyModule_AddIntConstant(module, "SUPPORTED", 1);
}

#else /* not CPUSAMPLER_SUPPORTED */

static int
sampler_exec(PyObject *module)
{
    return PyModule_AddIntConstant(module, "SUPPORTED", 0);
}

#endif

static PyMethodDef sampler_methods[] = {
#ifdef CPUSAMPLER_SUPPORTED
    {"start", sampler_start, METH_VARARGS,
     "start(interval_ns, marker): sample the calling thread every interval_ns of its CPU time, "
     "each stack up to the frame whose code object is at address marker."},
    {"stop", sampler_stop, METH_NOARGS,
     "stop() -> (samples, lost) or None: end sampling of the calling thread. A sample is "
     "(signals, timer expirations, flags, code address, ...), leaf first: a distinct stack, "
     "the signals that found it and the expirations they carried; flags: 1 the marker frame was "
     "found, 2 frames beyond the deepest 512 were dropped. lost: expirations not stored (the "
     "buffer was full)."},
    {"shutdown", sampler_shutdown, METH_NOARGS, "shutdown(): delete every timer of this process."},
    {"timers", sampler_timers, METH_NOARGS, "timers(): how many timers this process holds."},
    {"code_info", sampler_code_info, METH_O,
     "code_info(address) -> (filename, name, qualname, firstlineno) or None."},
    {"code_key", sampler_code_key, METH_O,
     "code_key(address) -> a cheap identity of the code object there, or None."},
#endif
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot sampler_slots[] = {
    {Py_mod_exec, sampler_exec},
    {0, NULL},
};

static struct PyModuleDef sampler_module = {
    PyModuleDef_HEAD_INIT,
    "wsgiprof._cpusampler",
    "Samples a thread's Python stack on its own CPU clock, from a signal handler on that thread.",
    0,
    sampler_methods,
    sampler_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__cpusampler(void)
{
    return PyModuleDef_Init(&sampler_module);
}
