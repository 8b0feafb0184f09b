#pragma once
// The loader's one failure type: its message names the cause and the fix, and
// main prints it as one line.
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace microsentinel::loader {

class loader_error : public std::runtime_error {
public:
    loader_error(const std::string& cause, const std::string& fix) : std::runtime_error(cause + "; fix: " + fix) {}
};

inline std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

} // namespace microsentinel::loader
