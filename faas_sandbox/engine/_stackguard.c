/* The C-stack guard of a sandbox child (faas_sandbox/engine/run.py says how it is used).

   CPython 3.11 recurses in C without a depth check in many places (hashing nested tuples,
   next() through chained iterators, freeing chained generators or slices): a function can
   make its child overflow the C stack and die on SIGSEGV, which the caller can only call
   `crash`. This module turns that death into a RESULT frame chosen before the fault.

   install(frames, cpu_at, rss_at): once, in the forker, before any fork (fork keeps both the
   handler and the alternate stack; a child's seccomp filter refuses sigaction and
   sigaltstack). Copies the pre-encoded frames (cpu_at, rss_at: where each frame holds its CPU
   seconds, a big-endian double, and its peak RSS in bytes, a big-endian u64) and installs a
   SIGSEGV handler that runs on an alternate stack.
   arm(fd, phase): in a child, at each phase of its call; stores two integers, no system
   call. A negative or unknown value disarms.

   The handler: if the guard is armed and the faulting address lies within NEAR_SP bytes of
   the stack pointer (a stack overflow: a push, a call or a new frame's store past the end of
   the stack), it fills in the child's CPU time and peak RSS (getrusage), writes frame
   phase*2 (the stack reached its RLIMIT_STACK) or phase*2+1 (it could not grow before that:
   the address-space limit) to fd and leaves with _exit(0), as a child does after its RESULT
   frame. Only getrusage, write and _exit run: async-signal-safe, and allowed by the filter.
   Anything else (not armed, a wild address) returns: SA_RESETHAND has restored the default
   action, so the faulting instruction runs again and kills the process as it would have
   without the guard (`crash`). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#define ALT_STACK_BYTES (64 * 1024)
#define NEAR_SP (64 * 1024)       /* a fault this close to the stack pointer is the stack's */
#define RLIMIT_MARGIN (1 << 20)   /* stack depth within this of RLIMIT_STACK: its limit */
#define MAX_FRAMES 8
#define MAX_FRAME_BYTES 512

extern void *__libc_stack_end;  /* glibc: the initial stack pointer of the main thread */

static char alt_stack[ALT_STACK_BYTES] __attribute__((aligned(16)));
static char frames[MAX_FRAMES][MAX_FRAME_BYTES];
static size_t frame_bytes[MAX_FRAMES];
static Py_ssize_t n_frames;
static Py_ssize_t cpu_at, rss_at;  /* offsets of the usage fields in every frame */
static uintptr_t stack_end;
static uintptr_t stack_rlimit;  /* 0: unlimited */
static volatile sig_atomic_t armed_fd = -1;
static volatile sig_atomic_t armed_phase = -1;

static uintptr_t fault_sp(void *context) {
    const ucontext_t *uc = context;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig;
    int fd = armed_fd, phase = armed_phase;
    uintptr_t sp = fault_sp(context), addr = (uintptr_t)info->si_addr;
    if (fd < 0 || phase < 0 || sp == 0 || addr + NEAR_SP < sp || addr > sp + NEAR_SP) {
        return; /* default action (SA_RESETHAND): the fault repeats and kills as before */
    }
    /* unlimited: only the address space (or another mapping) can have stopped the stack */
    int at_rlimit = stack_rlimit != 0 &&
                    (stack_end <= sp || stack_end - sp + RLIMIT_MARGIN >= stack_rlimit);
    int i = phase * 2 + (at_rlimit ? 0 : 1);
    if (i >= n_frames) {
        return;
    }
    char *p = frames[i];
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        uint64_t bits, rss = (uint64_t)ru.ru_maxrss * 1024;
        memcpy(&bits, &cpu, sizeof bits);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        bits = __builtin_bswap64(bits);
        rss = __builtin_bswap64(rss);
#endif
        memcpy(p + cpu_at, &bits, sizeof bits);
        memcpy(p + rss_at, &rss, sizeof rss);
    }
    size_t left = frame_bytes[i];
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(71); /* ExitCode.WIRE: the result could not be written */
        }
        p += n;
        left -= (size_t)n;
    }
    _exit(0); /* ExitCode.OK: a result frame was written */
}

static PyObject *install(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "install(frames, cpu_at, rss_at)");
        return NULL;
    }
    PyObject *arg = args[0];
    Py_ssize_t cpu = PyLong_AsSsize_t(args[1]), rss = PyLong_AsSsize_t(args[2]);
    if ((cpu == -1 || rss == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) > MAX_FRAMES) {
        PyErr_SetString(PyExc_ValueError, "frames: a tuple of at most 8 bytes objects");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(arg);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(arg, i);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) > MAX_FRAME_BYTES || cpu < 0 ||
            rss < 0 || cpu + 8 > PyBytes_GET_SIZE(item) || rss + 8 > PyBytes_GET_SIZE(item)) {
            PyErr_SetString(PyExc_ValueError, "each frame: bytes of at most 512 holding both fields");
            return NULL;
        }
    }
    armed_fd = -1;
    armed_phase = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(arg, i);
        memcpy(frames[i], PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
        frame_bytes[i] = (size_t)PyBytes_GET_SIZE(item);
    }
    n_frames = n;
    cpu_at = cpu;
    rss_at = rss;
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    stack_rlimit = rl.rlim_cur == RLIM_INFINITY ? 0 : (uintptr_t)rl.rlim_cur;
    stack_end = (uintptr_t)__libc_stack_end;
    stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *arm(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "arm(fd, phase)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    long phase = PyLong_AsLong(args[1]);
    if ((fd == -1 || phase == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT32_MAX || phase < 0 || phase >= MAX_FRAMES || phase * 2 >= n_frames) {
        fd = -1;
        phase = -1;
    }
    armed_phase = -1; /* never a new fd with an old phase, nor the reverse */
    armed_fd = (sig_atomic_t)fd;
    armed_phase = (sig_atomic_t)phase;
    Py_RETURN_NONE;
}

static PyObject *supported(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
#if defined(__x86_64__) || defined(__aarch64__)
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL,
     "install(frames, cpu_at, rss_at): the SIGSEGV handler and its frames."},
    {"arm", (PyCFunction)(void (*)(void))arm, METH_FASTCALL, "arm(fd, phase); -1 disarms."},
    {"supported", supported, METH_NOARGS, "Whether this CPU's stack pointer can be read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_stackguard", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__stackguard(void) { return PyModule_Create(&module_def); }
