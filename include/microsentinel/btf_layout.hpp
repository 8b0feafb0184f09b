#pragma once
// Layout negotiation from BTF: the `struct ms_sample` of a BPF object file, or
// of a loaded program or map. Needs libbpf (target MicroSentinel::bpf).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "layout.hpp"

namespace microsentinel {

namespace detail {

struct btf_deleter {
    void operator()(struct btf* b) const noexcept { btf__free(b); }
};
using btf_ptr = std::unique_ptr<struct btf, btf_deleter>;

inline std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

} // namespace detail

// `what` names the BTF's origin in errors.
inline negotiated_layout negotiate_from_btf(const struct btf* btf, const std::string& what)
{
    const __s32 type_id = btf__find_by_name_kind(btf, "ms_sample", BTF_KIND_STRUCT);
    if (type_id < 0)
        throw layout_error(what + " has no struct ms_sample: it is not a MicroSentinel collector, or it was built "
                                  "without BTF (build it with clang -g)");
    const struct btf_type* t = btf__type_by_id(btf, std::uint32_t(type_id));
    const struct btf_member* m = btf_members(t);
    std::vector<field_desc> fields;
    for (std::uint16_t i = 0; i < btf_vlen(t); ++i, ++m) {
        const std::uint32_t bit_offset = btf_member_bit_offset(t, i);
        if (btf_member_bitfield_size(t, i) != 0 || bit_offset % 8 != 0)
            throw layout_error(what + ": struct ms_sample member '" + btf__name_by_offset(btf, m->name_off) +
                               "' is a bit-field, which no layout uses");
        const __s64 size = btf__resolve_size(btf, m->type);
        if (size < 0)
            throw layout_error(what + ": cannot size struct ms_sample member '" +
                               btf__name_by_offset(btf, m->name_off) + "': " + detail::errno_text(int(size)));
        fields.push_back({btf__name_by_offset(btf, m->name_off), bit_offset / 8, std::uint32_t(size)});
    }
    return negotiate_from_fields(what, t->size, fields, layout_source::btf);
}

inline negotiated_layout negotiate_from_object_file(const std::string& path)
{
    detail::btf_ptr btf(btf__parse(path.c_str(), nullptr));
    if (!btf)
        throw layout_error("cannot read BTF from " + path + ": " + detail::errno_text(errno) +
                           " (is it a BPF object built with clang -g?)");
    return negotiate_from_btf(btf.get(), "BTF of " + path);
}

namespace detail {

inline negotiated_layout negotiate_from_kernel_btf_id(std::uint32_t btf_id, const std::string& what)
{
    if (btf_id == 0)
        throw layout_error(what + " carries no BTF (ring buffers never do); negotiate from the collector's "
                                  "sampling program, or load a collector built with BTF (clang -g)");
    btf_ptr btf(btf__load_from_kernel_by_id(btf_id));
    if (!btf)
        throw layout_error("cannot load BTF id " + std::to_string(btf_id) + " of " + what + ": " +
                           errno_text(errno) + " (needs CAP_SYS_ADMIN or CAP_BPF)");
    return negotiate_from_btf(btf.get(), "BTF of " + what);
}

} // namespace detail

inline negotiated_layout negotiate_from_prog_fd(int prog_fd)
{
    struct bpf_prog_info info {};
    __u32 len = sizeof info;
    if (int err = bpf_obj_get_info_by_fd(prog_fd, &info, &len); err != 0)
        throw layout_error("cannot query BPF program fd " + std::to_string(prog_fd) + ": " + detail::errno_text(err));
    return detail::negotiate_from_kernel_btf_id(info.btf_id, "BPF program id " + std::to_string(info.id) + " (" +
                                                                 info.name + ")");
}

inline negotiated_layout negotiate_from_map_fd(int map_fd)
{
    struct bpf_map_info info {};
    __u32 len = sizeof info;
    if (int err = bpf_obj_get_info_by_fd(map_fd, &info, &len); err != 0)
        throw layout_error("cannot query BPF map fd " + std::to_string(map_fd) + ": " + detail::errno_text(err));
    return detail::negotiate_from_kernel_btf_id(info.btf_id, "BPF map id " + std::to_string(info.id) + " (" +
                                                                 info.name + ")");
}

} // namespace microsentinel
