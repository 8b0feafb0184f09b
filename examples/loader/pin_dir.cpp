#include "pin_dir.hpp"

#include <dirent.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>

#include "error.hpp"

namespace microsentinel::loader {

namespace {

std::string parent_of(const std::string& path)
{
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

bool is_empty_dir(const std::string& path)
{
    DIR* d = opendir(path.c_str());
    if (!d)
        return false;
    bool empty = true;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") {
            empty = false;
            break;
        }
    }
    closedir(d);
    return empty;
}

bool on_bpffs(const std::string& path)
{
    struct statfs st {};
    return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

} // namespace

void ensure_bpffs(const std::string& pin_dir)
{
    const std::string parent = parent_of(pin_dir);
    if (on_bpffs(parent))
        return;
    struct stat st {};
    if (stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw loader_error("pin directory parent " + parent + " does not exist",
                           "create it and mount bpffs there (mount -t bpf bpf " + parent +
                               "), or pass --pin-dir under /sys/fs/bpf");
    if (!is_empty_dir(parent))
        throw loader_error(parent + " is not a bpf filesystem and is not empty, so bpffs is not mounted over it",
                           "mount -t bpf bpf " + parent + ", or pass --pin-dir under a mounted bpffs");
    if (mount("bpf", parent.c_str(), "bpf", 0, "mode=0700") != 0)
        throw loader_error("cannot mount bpffs at " + parent + ": " + errno_text(errno),
                           "mount it as root (mount -t bpf bpf " + parent + ", needs CAP_SYS_ADMIN), or pass "
                               "--pin-dir under a mounted bpffs");
}

bool is_pinned(const std::string& pin_dir)
{
    struct stat st {};
    return stat(pin_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && !is_empty_dir(pin_dir);
}

int remove_pins(const std::string& dir)
{
    DIR* d = opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT)
            return 0;
        throw loader_error("cannot open pin directory " + dir + ": " + errno_text(errno),
                           "run as root, or remove it by hand (rm -r " + dir + ")");
    }
    int removed = 0;
    int failed_errno = 0;
    std::string failed;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..")
            continue;
        std::string path = dir + "/" + name;
        if (unlink(path.c_str()) == 0) {
            ++removed;
        } else if (failed.empty()) {
            failed = path;
            failed_errno = errno;
        }
    }
    closedir(d);
    if (!failed.empty())
        throw loader_error("cannot remove pin " + failed + ": " + errno_text(failed_errno),
                           "run as root, or remove it by hand (rm -r " + dir + ")");
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT)
        throw loader_error("cannot remove pin directory " + dir + ": " + errno_text(errno),
                           "remove it by hand (rm -r " + dir + ")");
    return removed;
}

void install_staged(const std::string& staging, const std::string& pin_dir)
{
    const std::string old = pin_dir + "_old";
    remove_pins(old);
    bool replacing = access(pin_dir.c_str(), F_OK) == 0;
    if (replacing && rename(pin_dir.c_str(), old.c_str()) != 0)
        throw loader_error("cannot move the pinned collector " + pin_dir + " aside: " + errno_text(errno),
                           "unload it first (micro_sentinel_loader --unload --pin-dir " + pin_dir + ")");
    if (rename(staging.c_str(), pin_dir.c_str()) != 0) {
        int err = errno;
        if (replacing)
            rename(old.c_str(), pin_dir.c_str());
        throw loader_error("cannot move " + staging + " to " + pin_dir + ": " + errno_text(err),
                           "unload the pinned collector first (micro_sentinel_loader --unload)");
    }
    if (replacing)
        remove_pins(old);
}

} // namespace microsentinel::loader
