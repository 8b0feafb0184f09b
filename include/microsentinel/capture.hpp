#pragma once
// The capture format (docs/capture-format.md): a header that carries the
// negotiated layout, then framed records. Files and stdin streams alike.
#include <array>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "decode.hpp"
#include "layout.hpp"

namespace microsentinel {

static_assert(std::endian::native == std::endian::little, "the capture format is little-endian; so is this reader");

inline constexpr std::array<char, 8> capture_magic{'M', 'S', 'E', 'N', 'T', 'C', 'A', 'P'};
inline constexpr std::uint16_t capture_format_version = 1;
inline constexpr std::uint32_t capture_max_payload = 1u << 20;

enum class frame_type : std::uint32_t { sample = 1, layout = 2, counters = 3 };

// The collector's own cumulative counters, as the loader read them.
struct collector_counters {
    std::uint64_t emitted = 0;
    std::uint64_t throttled = 0;
    std::uint64_t ringbuf_full = 0;

    friend bool operator==(const collector_counters&, const collector_counters&) = default;
};

struct capture_header {
    std::int64_t boot_to_wall_ns = 0; // wall-clock ns = sample.tsc + this
    std::string host;
    negotiated_layout layout;
};

class capture_error : public std::runtime_error {
public:
    capture_error(const std::string& source, std::uint64_t offset, const std::string& what)
        : std::runtime_error(source + ": byte offset " + std::to_string(offset) + ": " + what), offset_(offset)
    {
    }
    std::uint64_t offset() const noexcept { return offset_; }

private:
    std::uint64_t offset_;
};

namespace detail {

class byte_writer {
public:
    template <class T>
    void put(T v)
    {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof v);
    }
    void put_bytes(std::string_view s)
    {
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        bytes.insert(bytes.end(), p, p + s.size());
    }
    std::vector<std::byte> bytes;
};

// Reads little-endian fields out of a payload; any overrun is a capture_error.
class byte_reader {
public:
    byte_reader(std::span<const std::byte> data, const std::string& source, std::uint64_t base_offset)
        : data_(data), source_(source), base_(base_offset)
    {
    }
    template <class T>
    T get(std::string_view what)
    {
        T v;
        std::memcpy(&v, need(sizeof v, what), sizeof v);
        return v;
    }
    std::string get_string(std::size_t n, std::string_view what)
    {
        const std::byte* p = need(n, what);
        return std::string(reinterpret_cast<const char*>(p), n);
    }
    std::size_t remaining() const noexcept { return data_.size() - at_; }
    std::uint64_t offset() const noexcept { return base_ + at_; }

private:
    const std::byte* need(std::size_t n, std::string_view what)
    {
        if (data_.size() - at_ < n)
            throw capture_error(source_, offset(), "ends inside " + std::string(what) + " (needs " +
                                                       std::to_string(n) + " bytes, " +
                                                       std::to_string(data_.size() - at_) + " left)");
        const std::byte* p = data_.data() + at_;
        at_ += n;
        return p;
    }

    std::span<const std::byte> data_;
    const std::string& source_;
    std::uint64_t base_;
    std::size_t at_ = 0;
};

inline void put_layout_block(byte_writer& w, const negotiated_layout& layout)
{
    w.put<std::uint32_t>(std::uint32_t(layout.id));
    w.put<std::uint32_t>(layout.record_size);
    w.put<std::uint16_t>(std::uint16_t(layout.fields.size()));
    for (const auto& f : layout.fields) {
        w.put<std::uint8_t>(std::uint8_t(f.name.size()));
        w.put_bytes(f.name);
        w.put<std::uint32_t>(f.offset);
        w.put<std::uint32_t>(f.size);
    }
}

// The field table decides; a layout id that disagrees with it is an error.
inline negotiated_layout get_layout_block(byte_reader& r, const std::string& source)
{
    const std::uint64_t at = r.offset();
    const auto id = r.get<std::uint32_t>("layout id");
    const auto record_size = r.get<std::uint32_t>("record size");
    const auto count = r.get<std::uint16_t>("field count");
    std::vector<field_desc> fields;
    fields.reserve(count);
    for (std::uint16_t i = 0; i < count; ++i) {
        auto len = r.get<std::uint8_t>("field name length");
        field_desc f;
        f.name = r.get_string(len, "field name");
        f.offset = r.get<std::uint32_t>("field offset");
        f.size = r.get<std::uint32_t>("field size");
        fields.push_back(std::move(f));
    }
    try {
        if (fields.empty())
            return negotiate_from_layout_id(id, record_size);
        negotiated_layout layout =
            negotiate_from_fields("the capture header", record_size, fields, layout_source::capture_header);
        if (id != 0 && id != std::uint32_t(layout.id))
            throw layout_error("the capture header says layout " + std::to_string(id) +
                               " but its field table describes " + std::string(layout.name()));
        return layout;
    } catch (const layout_error& e) {
        throw capture_error(source, at, e.what());
    }
}

} // namespace detail

class capture_writer {
public:
    explicit capture_writer(std::FILE* out) : out_(out) {}

    void write_header(const capture_header& h)
    {
        detail::byte_writer w;
        w.put_bytes(std::string_view(capture_magic.data(), capture_magic.size()));
        w.put<std::uint16_t>(capture_format_version);
        w.put<std::uint16_t>(0);
        w.put<std::uint32_t>(0); // header_len, patched below
        w.put<std::int64_t>(h.boot_to_wall_ns);
        std::string_view host = std::string_view(h.host).substr(0, 255);
        w.put<std::uint16_t>(std::uint16_t(host.size()));
        w.put_bytes(host);
        detail::put_layout_block(w, h.layout);
        auto len = std::uint32_t(w.bytes.size());
        std::memcpy(w.bytes.data() + 12, &len, sizeof len);
        write(w.bytes);
    }

    void write_sample(std::span<const std::byte> record) { write_frame(frame_type::sample, record); }

    void write_layout(const negotiated_layout& layout)
    {
        detail::byte_writer w;
        detail::put_layout_block(w, layout);
        write_frame(frame_type::layout, w.bytes);
    }

    void write_counters(const collector_counters& c)
    {
        detail::byte_writer w;
        w.put(c.emitted);
        w.put(c.throttled);
        w.put(c.ringbuf_full);
        write_frame(frame_type::counters, w.bytes);
    }

    void flush()
    {
        if (std::fflush(out_) != 0)
            throw std::runtime_error(std::string("capture: write failed: ") + std::strerror(errno));
    }

private:
    void write_frame(frame_type type, std::span<const std::byte> payload)
    {
        std::uint32_t head[2] = {std::uint32_t(type), std::uint32_t(payload.size())};
        write(std::as_bytes(std::span(head)));
        write(payload);
    }

    void write(std::span<const std::byte> bytes)
    {
        if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size())
            throw std::runtime_error(std::string("capture: write failed: ") + std::strerror(errno));
    }

    std::FILE* out_;
};

struct capture_frame {
    frame_type type;
    std::span<const std::byte> payload; // valid until the next call to next()
    std::uint64_t offset;               // of the frame header in the input
};

class capture_reader {
public:
    // Reads the header at once: a bad header throws capture_error here.
    capture_reader(std::FILE* in, std::string source) : in_(in), source_(std::move(source)) { read_header(); }

    const capture_header& header() const noexcept { return header_; }
    const std::string& source() const noexcept { return source_; }
    std::uint64_t offset() const noexcept { return offset_; }

    // False at a clean end of input (on a frame boundary).
    bool next(capture_frame& frame)
    {
        std::uint32_t head[2];
        const std::uint64_t at = offset_;
        std::size_t got = read_some(head, sizeof head);
        if (got == 0)
            return false;
        if (got != sizeof head)
            throw capture_error(source_, at, "input ends inside a frame header");
        if (head[0] < 1 || head[0] > 3)
            throw capture_error(source_, at, "unknown frame type " + std::to_string(head[0]) +
                                                 " (not a capture, or a newer format: upgrade the reader)");
        if (head[1] > capture_max_payload)
            throw capture_error(source_, at, "frame of " + std::to_string(head[1]) + " bytes exceeds the " +
                                                 std::to_string(capture_max_payload) + "-byte limit");
        buffer_.resize(head[1]);
        if (read_some(buffer_.data(), head[1]) != head[1])
            throw capture_error(source_, at, "input ends inside a frame of " + std::to_string(head[1]) + " bytes");
        frame = {frame_type(head[0]), buffer_, at};
        return true;
    }

    negotiated_layout parse_layout(const capture_frame& frame) const
    {
        detail::byte_reader r(frame.payload, source_, frame.offset + 8);
        return detail::get_layout_block(r, source_);
    }

    collector_counters parse_counters(const capture_frame& frame) const
    {
        detail::byte_reader r(frame.payload, source_, frame.offset + 8);
        collector_counters c;
        c.emitted = r.get<std::uint64_t>("counters");
        c.throttled = r.get<std::uint64_t>("counters");
        c.ringbuf_full = r.get<std::uint64_t>("counters");
        return c;
    }

private:
    std::size_t read_some(void* dst, std::size_t n)
    {
        std::size_t got = std::fread(dst, 1, n, in_);
        offset_ += got;
        if (got != n && std::ferror(in_))
            throw capture_error(source_, offset_, std::string("read failed: ") + std::strerror(errno));
        return got;
    }

    void read_header()
    {
        constexpr std::size_t fixed = 8 + 2 + 2 + 4;
        std::byte head[fixed];
        if (read_some(head, fixed) != fixed)
            throw capture_error(source_, offset_, "too short for a capture header (" + std::to_string(offset_) +
                                                      " bytes)");
        if (std::memcmp(head, capture_magic.data(), capture_magic.size()) != 0)
            throw capture_error(source_, 0, "not a MicroSentinel capture (bad magic); record one with "
                                            "micro_sentinel_loader --record FILE");
        std::uint16_t version;
        std::uint32_t header_len;
        std::memcpy(&version, head + 8, sizeof version);
        std::memcpy(&header_len, head + 12, sizeof header_len);
        if (version != capture_format_version)
            throw capture_error(source_, 8, "capture format version " + std::to_string(version) +
                                                " is not supported (this reader knows " +
                                                std::to_string(capture_format_version) + ")");
        if (header_len < fixed || header_len > capture_max_payload)
            throw capture_error(source_, 12, "implausible header length " + std::to_string(header_len));
        buffer_.resize(header_len - fixed);
        if (read_some(buffer_.data(), buffer_.size()) != buffer_.size())
            throw capture_error(source_, offset_, "input ends inside the capture header");
        detail::byte_reader r(buffer_, source_, fixed);
        header_.boot_to_wall_ns = r.get<std::int64_t>("boot-to-wall offset");
        auto host_len = r.get<std::uint16_t>("host name length");
        header_.host = r.get_string(host_len, "host name");
        header_.layout = detail::get_layout_block(r, source_);
        if (r.remaining() != 0)
            throw capture_error(source_, r.offset(), "header has " + std::to_string(r.remaining()) +
                                                         " unexpected trailing bytes");
    }

    std::FILE* in_;
    std::string source_;
    capture_header header_;
    std::vector<std::byte> buffer_;
    std::uint64_t offset_ = 0;
};

// Replays a capture into `handler`, which provides
//   on_sample(const sample&), on_layout(const negotiated_layout&),
//   on_counters(const collector_counters&).
// Layout frames renegotiate `decoder` before the samples that follow.
template <class Handler>
void replay(capture_reader& reader, sample_decoder& decoder, Handler& handler)
{
    capture_frame frame;
    sample s;
    while (reader.next(frame)) {
        switch (frame.type) {
        case frame_type::sample:
            if (decoder.decode(frame.payload, s))
                handler.on_sample(s);
            break;
        case frame_type::layout: {
            negotiated_layout layout = reader.parse_layout(frame);
            decoder.renegotiate(layout);
            handler.on_layout(layout);
            break;
        }
        case frame_type::counters:
            handler.on_counters(reader.parse_counters(frame));
            break;
        }
    }
}

// The same, decoding with the layout of the capture's header; returns what
// the decoder decoded and skipped.
template <class Handler>
decode_stats replay(capture_reader& reader, Handler& handler)
{
    sample_decoder decoder(reader.header().layout);
    replay(reader, decoder, handler);
    return decoder.stats();
}

} // namespace microsentinel
