#pragma once
// The on-disk spool: batches that could not be delivered yet, one file per
// batch, replayed oldest first (also after the writer restarts), bounded in
// bytes. And the quarantine: batches the server rejected as invalid, kept
// with the server's error for an operator.
//
// A batch file is written to a temporary name, fsync'd, renamed and the
// directory fsync'd, so a crash leaves either the whole batch or none of it.
// Each file carries a CRC-32 over its contents; a file that fails it is moved
// to quarantine and counted, never silently skipped.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace microsentinel::clickhouse {

class spool_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One INSERT's worth of rows, ready to send or to spool.
struct batch {
    std::uint64_t sequence = 0;
    std::string table;
    std::string columns; // "name Type,name Type" (schema.hpp typed_column_list)
    std::string token;   // deduplication token: stable across retries
    std::uint64_t rows = 0;
    std::string payload; // RowBinary

    std::size_t file_size() const noexcept { return header_size + table.size() + columns.size() + token.size() + payload.size(); }
    static constexpr std::size_t header_size = 8 + 4 + 4 + 8 + 4 + 4 + 4 + 8;
};

namespace detail {

inline constexpr std::array<std::uint32_t, 256> crc32_table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    return t;
}();

inline std::uint32_t crc32(std::string_view data, std::uint32_t crc = 0) noexcept
{
    crc = ~crc;
    for (unsigned char b : data)
        crc = crc32_table[(crc ^ b) & 0xff] ^ (crc >> 8);
    return ~crc;
}

inline std::string errno_text(int e) { return std::strerror(e); }

inline void write_all(int fd, std::string_view data, const std::string& path)
{
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw spool_error("cannot write spool file " + path + ": " + errno_text(errno) + "; free disk space or choose another --spool-dir");
        }
        data.remove_prefix(std::size_t(n));
    }
}

inline void fsync_dir(const std::filesystem::path& dir)
{
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

template<class T>
void append_le(std::string& s, T v)
{
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    s.append(raw, sizeof(T));
}

inline constexpr char spool_magic[8] = {'M', 'S', 'C', 'H', 'S', 'P', 'L', '1'};

// Serialized batch file: magic, u32 version, u32 crc of the rest, u64 sequence,
// u32 table/columns/token lengths, u64 rows, then the strings and the payload.
// (payload length = file size - header - strings.)
inline std::string encode_batch_file(const batch& b)
{
    std::string body;
    body.reserve(b.file_size());
    append_le<std::uint64_t>(body, b.sequence);
    append_le<std::uint32_t>(body, std::uint32_t(b.table.size()));
    append_le<std::uint32_t>(body, std::uint32_t(b.columns.size()));
    append_le<std::uint32_t>(body, std::uint32_t(b.token.size()));
    append_le<std::uint64_t>(body, b.rows);
    body += b.table;
    body += b.columns;
    body += b.token;
    std::uint32_t crc = crc32(b.payload, crc32(body));
    std::string head(spool_magic, sizeof spool_magic);
    append_le<std::uint32_t>(head, 1);
    append_le<std::uint32_t>(head, crc);
    return head + body;
}

inline void write_file_durably(const std::filesystem::path& path, std::string_view head, std::string_view payload)
{
    auto tmp = path;
    tmp += ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        throw spool_error("cannot create spool file " + tmp.string() + ": " + errno_text(errno) + "; check --spool-dir");
    try {
        write_all(fd, head, tmp.string());
        write_all(fd, payload, tmp.string());
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::fsync(fd) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw spool_error("cannot fsync spool file " + tmp.string() + ": " + errno_text(e));
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw spool_error("cannot rename spool file to " + path.string() + ": " + errno_text(errno));
    fsync_dir(path.parent_path());
}

inline std::string read_whole_file(const std::filesystem::path& path)
{
    std::string data;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
        throw spool_error("cannot open spool file " + path.string() + ": " + errno_text(errno));
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        data.append(buf, n);
    bool failed = std::ferror(f);
    std::fclose(f);
    if (failed)
        throw spool_error("cannot read spool file " + path.string());
    return data;
}

// nullopt when the file is truncated or its checksum does not match.
inline std::optional<batch> decode_batch_file(std::string_view data)
{
    auto get = [&](auto& v, std::size_t at) {
        std::memcpy(&v, data.data() + at, sizeof v);
    };
    if (data.size() < batch::header_size || std::memcmp(data.data(), spool_magic, 8) != 0)
        return std::nullopt;
    std::uint32_t version, crc, table_len, columns_len, token_len;
    batch b;
    get(version, 8);
    get(crc, 12);
    get(b.sequence, 16);
    get(table_len, 24);
    get(columns_len, 28);
    get(token_len, 32);
    get(b.rows, 36);
    std::size_t strings = std::size_t(table_len) + columns_len + token_len;
    if (version != 1 || data.size() - batch::header_size < strings)
        return std::nullopt;
    if (crc32(data.substr(16)) != crc)
        return std::nullopt;
    std::size_t at = batch::header_size;
    b.table = data.substr(at, table_len);
    at += table_len;
    b.columns = data.substr(at, columns_len);
    at += columns_len;
    b.token = data.substr(at, token_len);
    at += token_len;
    b.payload = data.substr(at);
    return b;
}

} // namespace detail

// Batches the server rejected as invalid: the batch file as spooled plus a
// .error file with the server's answer. Not retried; kept for an operator.
class quarantine {
public:
    explicit quarantine(std::filesystem::path dir) : dir_(std::move(dir)) {}

    const std::filesystem::path& dir() const noexcept { return dir_; }

    // Returns the path of the quarantined batch.
    std::filesystem::path put(const batch& b, std::string_view error)
    {
        std::filesystem::create_directories(dir_);
        char name[64];
        std::snprintf(name, sizeof name, "%020llu", static_cast<unsigned long long>(b.sequence));
        auto path = dir_ / (std::string(name) + ".batch");
        // Never overwrite: a restarted writer may reuse a sequence number.
        for (int i = 1; std::filesystem::exists(path); ++i)
            path = dir_ / (std::string(name) + "-" + std::to_string(i) + ".batch");
        detail::write_file_durably(path, detail::encode_batch_file(b), b.payload);
        auto err = path;
        err.replace_extension(".error");
        std::string text = "table " + b.table + ", " + std::to_string(b.rows) + " rows, token " + b.token + "\n" +
                           std::string(error) + "\n";
        detail::write_file_durably(err, text, {});
        ++count_;
        return path;
    }

    std::uint64_t count() const noexcept { return count_; }

private:
    std::filesystem::path dir_;
    std::uint64_t count_ = 0;
};

// The bounded spool of undelivered batches. Not thread-safe: one writer owns it.
class spool {
public:
    spool(std::filesystem::path dir, std::uint64_t max_bytes)
        : dir_(std::move(dir)), max_bytes_(max_bytes), quarantine_(dir_ / "quarantine")
    {
        std::error_code ec;
        std::filesystem::create_directories(dir_, ec);
        if (ec)
            throw spool_error("cannot create spool directory " + dir_.string() + ": " + ec.message() + "; choose another --spool-dir");
        // One writer per spool: two would send each other's batches twice.
        lock_fd_ = ::open((dir_ / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (lock_fd_ < 0)
            throw spool_error("cannot create " + (dir_ / ".lock").string() + ": " + detail::errno_text(errno) + "; check --spool-dir");
        if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
            ::close(lock_fd_);
            throw spool_error("spool directory " + dir_.string() + " is in use by another writer; give each writer its own --spool-dir");
        }
        for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
            if (!entry.is_regular_file())
                continue;
            const auto& p = entry.path();
            if (p.extension() == ".tmp") {
                // A crash between write and rename: the batch was never acknowledged as spooled.
                std::filesystem::remove(p, ec);
                continue;
            }
            if (p.extension() != ".batch")
                continue;
            std::uint64_t seq = std::strtoull(p.stem().c_str(), nullptr, 10);
            files_[seq] = entry.file_size();
            bytes_ += entry.file_size();
            next_sequence_ = std::max(next_sequence_, seq + 1);
        }
    }

    ~spool()
    {
        if (lock_fd_ >= 0)
            ::close(lock_fd_);
    }

    spool(const spool&) = delete;
    spool& operator=(const spool&) = delete;

    const std::filesystem::path& dir() const noexcept { return dir_; }
    std::uint64_t max_bytes() const noexcept { return max_bytes_; }
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::size_t size() const noexcept { return files_.size(); }
    bool empty() const noexcept { return files_.empty(); }
    // Batches found unreadable (bad checksum or truncated), moved to quarantine.
    std::uint64_t corrupt() const noexcept { return corrupt_; }
    class quarantine& quarantined() noexcept { return quarantine_; }

    // The sequence number the next new batch gets: continues after a restart.
    std::uint64_t take_sequence() noexcept { return next_sequence_++; }

    bool fits(const batch& b) const noexcept { return bytes_ + b.file_size() <= max_bytes_; }

    // Durable when it returns. Caller checks fits() first (backpressure).
    void push(const batch& b)
    {
        auto path = path_of(b.sequence);
        detail::write_file_durably(path, detail::encode_batch_file(b), b.payload);
        auto size = b.file_size();
        files_[b.sequence] = size;
        bytes_ += size;
    }

    // The oldest readable batch; unreadable files are quarantined on the way.
    std::optional<batch> front()
    {
        while (!files_.empty()) {
            auto [seq, size] = *files_.begin();
            auto path = path_of(seq);
            std::string data;
            try {
                data = detail::read_whole_file(path);
            } catch (const spool_error&) {
                forget(seq);
                ++corrupt_;
                continue;
            }
            if (auto b = detail::decode_batch_file(data)) {
                b->sequence = seq;
                return b;
            }
            ++corrupt_;
            std::filesystem::create_directories(quarantine_.dir());
            std::error_code ec;
            std::filesystem::rename(path, quarantine_.dir() / (path.filename().string() + ".corrupt"), ec);
            forget(seq);
        }
        return std::nullopt;
    }

    // Removes the batch once the server acknowledged it (or it was quarantined).
    void pop(std::uint64_t sequence)
    {
        std::error_code ec;
        std::filesystem::remove(path_of(sequence), ec);
        forget(sequence);
    }

private:
    std::filesystem::path path_of(std::uint64_t seq) const
    {
        char name[32];
        std::snprintf(name, sizeof name, "%020llu.batch", static_cast<unsigned long long>(seq));
        return dir_ / name;
    }

    void forget(std::uint64_t seq)
    {
        auto it = files_.find(seq);
        if (it == files_.end())
            return;
        bytes_ -= it->second;
        files_.erase(it);
    }

    std::filesystem::path dir_;
    std::uint64_t max_bytes_;
    std::map<std::uint64_t, std::uint64_t> files_; // sequence -> file size
    std::uint64_t bytes_ = 0;
    std::uint64_t next_sequence_ = 1;
    std::uint64_t corrupt_ = 0;
    class quarantine quarantine_;
    int lock_fd_ = -1;
};

} // namespace microsentinel::clickhouse
