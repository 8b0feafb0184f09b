#pragma once
// --record: reads the pinned collector's ring buffer into a capture, following
// a replacement of the pinned collector (upgrade or rollback) without ever
// writing a record under the wrong layout.
#include <csignal>
#include <cstdio>
#include <string>

namespace microsentinel::loader {

struct record_result {
    unsigned long long samples = 0;
    unsigned long long layout_changes = 0;
};

// Records until `duration_s` passed (0: until *stop is set). Throws loader_error.
record_result record_pinned(const std::string& pin_dir, std::FILE* out, double duration_s,
                            const volatile std::sig_atomic_t* stop);

} // namespace microsentinel::loader
