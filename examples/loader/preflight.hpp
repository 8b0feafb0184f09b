#pragma once
// Checks before touching the kernel, so that a missing requirement is reported
// by name instead of as a failed bpf() call.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "error.hpp"

namespace microsentinel::loader {

inline constexpr const char* kernel_btf_path = "/sys/kernel/btf/vmlinux";

inline void require_kernel_btf()
{
    if (access(kernel_btf_path, R_OK) != 0)
        throw loader_error(std::string("the kernel exposes no BTF (") + kernel_btf_path + ": " + errno_text(errno) +
                               "), which the CO-RE collector needs",
                           "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y");
}

inline bool has_effective_cap(int cap)
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (syscall(SYS_capget, &header, data) != 0)
        return false;
    return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

// CAP_SYS_ADMIN implies both on kernels before 5.8 and still grants them after.
inline void require_bpf_capabilities(bool perfmon)
{
    if (has_effective_cap(CAP_SYS_ADMIN))
        return;
    std::string missing;
    if (!has_effective_cap(CAP_BPF))
        missing = "CAP_BPF";
    if (perfmon && !has_effective_cap(CAP_PERFMON))
        missing += missing.empty() ? "CAP_PERFMON" : "/CAP_PERFMON";
    if (!missing.empty())
        throw loader_error("missing " + missing + " (loading and attaching the collector needs CAP_BPF and CAP_PERFMON)",
                           "run as root, or grant them: setcap cap_bpf,cap_perfmon,cap_sys_admin+ep "
                           "micro_sentinel_loader");
}

} // namespace microsentinel::loader
