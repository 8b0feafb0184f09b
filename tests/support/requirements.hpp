#pragma once
// Tests that need root, the kernel's BPF or an external program skip with exit
// code 77 (ctest's SKIP_RETURN_CODE) and say why, except under CI=true, where a
// missing requirement is a failure: CI must run them.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unistd.h>

namespace microsentinel::testing {

inline bool running_in_ci()
{
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string_view(ci) == "true";
}

[[noreturn]] inline void skip_or_fail(std::string_view why)
{
    if (running_in_ci()) {
        std::fprintf(stderr, "FAILED: %.*s (CI=true: this test must run)\n", int(why.size()), why.data());
        std::exit(1);
    }
    std::fprintf(stderr, "SKIPPED: %.*s\n", int(why.size()), why.data());
    std::exit(77);
}

inline void require_root()
{
    if (geteuid() != 0)
        skip_or_fail("needs root (CAP_BPF, CAP_PERFMON); run as root or with sudo");
}

// Absolute path of `program` if it is on PATH, else empty.
inline std::string find_program(std::string_view program)
{
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/bin:/bin";
    while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        std::string candidate = dir + "/" + std::string(program);
        if (access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
    }
    for (const char* dir : {"/usr/sbin", "/sbin"}) {
        std::string candidate = std::string(dir) + "/" + std::string(program);
        if (access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return {};
}

inline std::string require_program(std::string_view program, std::string_view package)
{
    std::string found = find_program(program);
    if (found.empty())
        skip_or_fail(std::string(program) + " not found; install the Debian package " + std::string(package));
    return found;
}

} // namespace microsentinel::testing
