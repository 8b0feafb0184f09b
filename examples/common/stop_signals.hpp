#pragma once
// SIGINT/SIGTERM for the example binaries: a flag the main loop polls, and a
// way to start helper threads that never take these signals, so that a signal
// always reaches the main thread and interrupts its blocking read.
#include <pthread.h>
#include <signal.h>

#include <csignal>

namespace microsentinel::examples {

inline volatile std::sig_atomic_t stop_requested = 0;

extern "C" inline void on_stop_signal(int) { stop_requested = 1; }

// While one lives, threads started inherit a mask that blocks SIGINT and
// SIGTERM. With `interrupt_reads`, the handler is installed without SA_RESTART,
// so a read in the main thread returns when a signal arrives; without, reads
// go on, for a main thread whose input ends by itself once stop is set.
class stop_signals_blocked {
public:
    explicit stop_signals_blocked(bool interrupt_reads)
    {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set_, nullptr);
        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sa.sa_flags = interrupt_reads ? 0 : SA_RESTART;
        sigaction(SIGINT, &sa, nullptr);
        sigaction(SIGTERM, &sa, nullptr);
    }
    ~stop_signals_blocked() { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }
    stop_signals_blocked(const stop_signals_blocked&) = delete;
    stop_signals_blocked& operator=(const stop_signals_blocked&) = delete;

private:
    sigset_t set_;
};

} // namespace microsentinel::examples
