#pragma once
// The pin directory on a bpf filesystem: mounting bpffs when needed, removing
// what was pinned, and swapping a staged directory in.
#include <string>

namespace microsentinel::loader {

// Makes sure `pin_dir`'s parent is a bpf filesystem, mounting one there when
// it is an empty directory. Throws loader_error naming the cause and the fix.
void ensure_bpffs(const std::string& pin_dir);

bool is_pinned(const std::string& pin_dir);

// Unlinks every pin in `dir` and removes it; returns how many pins went.
// Missing `dir` is not an error.
int remove_pins(const std::string& dir);

// bpffs refuses names with dots, hence `_staging` and `_old` next to `pin_dir`.
// Puts `staging` in place of `pin_dir`, replacing a pinned collector there;
// the old one's pins are removed, which detaches it.
void install_staged(const std::string& staging, const std::string& pin_dir);

} // namespace microsentinel::loader
