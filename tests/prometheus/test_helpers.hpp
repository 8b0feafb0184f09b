#pragma once
// Test plumbing for the Prometheus tests: a temp dir (tests/support), child
// processes that are always killed, a raw HTTP client, free loopback ports,
// and capture bytes written field by field (docs/capture-format.md).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace microsentinel::testing {

inline std::string read_file(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_file(const std::filesystem::path& p, std::string_view data)
{
    std::ofstream out(p, std::ios::binary);
    out.write(data.data(), std::streamsize(data.size()));
}

// A child whose stdout and stderr go to `log`; SIGTERM, then SIGKILL, on destruction.
class child_process {
public:
    child_process(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  const std::filesystem::path& stdin_path = "/dev/null")
    {
        std::fflush(stdout); // or the child would write the parent's buffered output again
        std::fflush(stderr);
        pid_ = ::fork();
        if (pid_ < 0)
            throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid_ == 0) {
            FILE* in = std::freopen(stdin_path.c_str(), "rb", stdin);
            FILE* out = std::freopen(log.c_str(), "wb", stdout);
            if (in == nullptr || out == nullptr || ::dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
                ::_exit(126);
            std::vector<char*> args;
            for (const auto& a : argv)
                args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
    }
    ~child_process() { terminate(); }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    pid_t pid() const { return pid_; }

    // Exit status once it exited within `limit`, else -1.
    int wait_exit(std::chrono::milliseconds limit)
    {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (pid_ > 0) {
            int st = 0;
            pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (std::chrono::steady_clock::now() >= end)
                return -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return status_;
    }

    // SIGTERM, up to 5 s to exit, then SIGKILL. Returns the exit status.
    int terminate()
    {
        if (pid_ <= 0)
            return status_;
        ::kill(pid_, SIGTERM);
        if (wait_exit(std::chrono::seconds(5)) >= 0)
            return status_;
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
        pid_ = -1;
        status_ = 128 + SIGKILL;
        return status_;
    }

private:
    pid_t pid_ = -1;
    int status_ = -1;
};

// Waits (bounded by time) until `log` contains `needle`; returns the content.
inline std::string wait_for_log(const std::filesystem::path& log, std::string_view needle,
                                std::chrono::milliseconds limit)
{
    const auto end = std::chrono::steady_clock::now() + limit;
    std::string text;
    while (std::chrono::steady_clock::now() < end) {
        text = read_file(log);
        if (text.find(needle) != std::string::npos)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return text;
}

// A loopback port nobody listens on right now.
inline std::uint16_t free_loopback_port()
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// A connected loopback socket with send/receive timeouts (so a test cannot hang).
inline int connect_loopback(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(20))
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        int err = errno;
        ::close(fd);
        throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(err));
    }
    return fd;
}

inline void send_text(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0)
            throw std::runtime_error("send failed");
        data.remove_prefix(std::size_t(n));
    }
}

// Everything until the peer closes (or the receive timeout).
inline std::string receive_all(int fd)
{
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        out.append(buf, std::size_t(n));
    }
    return out;
}

struct http_response {
    int status = 0;
    std::map<std::string, std::string> headers; // names lower-cased
    std::string body;
};

inline http_response parse_response(const std::string& raw)
{
    http_response r;
    auto head_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos)
        return r;
    r.status = std::atoi(raw.c_str() + 9);
    std::istringstream head(raw.substr(0, head_end));
    std::string line;
    std::getline(head, line);
    while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        auto colon = line.find(':');
        if (colon == std::string::npos)
            continue;
        std::string name = line.substr(0, colon);
        for (auto& c : name)
            c = char(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        r.headers[name] = value;
    }
    r.body = raw.substr(head_end + 4);
    return r;
}

inline http_response http_request(std::uint16_t port, std::string_view method, std::string_view target,
                                  std::string_view extra_headers = {})
{
    int fd = connect_loopback(port);
    std::string req = std::string(method) + " " + std::string(target) +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + std::string(extra_headers) + "\r\n";
    send_text(fd, req);
    std::string raw = receive_all(fd);
    ::close(fd);
    return parse_response(raw);
}

// Little-endian bytes, field by field.
class byte_builder {
public:
    template <class T>
    byte_builder& put(T v)
    {
        for (std::size_t i = 0; i < sizeof v; ++i)
            bytes.push_back(char((std::uint64_t(v) >> (8 * i)) & 0xff));
        return *this;
    }
    byte_builder& put_text(std::string_view s)
    {
        bytes.append(s);
        return *this;
    }
    std::string bytes;
};

struct test_sample {
    std::uint64_t tsc;
    std::uint32_t pmu_event;
    std::uint64_t flow_id;
    std::uint32_t gso_segs;
    std::uint8_t direction; // v2 byte at offset 57
};

// Capture header naming `layout_id` with a 320-byte record and no field table.
inline std::string capture_header_bytes(std::uint32_t layout_id)
{
    const std::string host = "test-host";
    byte_builder h;
    h.put_text("MSENTCAP").put<std::uint16_t>(1).put<std::uint16_t>(0);
    const std::uint32_t header_len = 8 + 2 + 2 + 4 + 8 + 2 + std::uint32_t(host.size()) + 4 + 4 + 2;
    h.put<std::uint32_t>(header_len).put<std::int64_t>(0).put<std::uint16_t>(std::uint16_t(host.size()));
    h.put_text(host).put<std::uint32_t>(layout_id).put<std::uint32_t>(320).put<std::uint16_t>(0);
    return h.bytes;
}

// A sample frame: one 320-byte record. Byte 57 is `direction` in v2 and
// `lbr_nr` in v1; bytes 58-59 are lbr_nr/pad0 (v2) or pad0[2] (v1), all zero
// here, so a test_sample with direction 0 is a valid v1 record too.
inline std::string sample_frame(const test_sample& s)
{
    byte_builder r;
    r.put<std::uint64_t>(s.tsc).put<std::uint32_t>(0 /*cpu*/).put<std::uint32_t>(100 /*pid*/);
    r.put<std::uint32_t>(101 /*tid*/).put<std::uint32_t>(s.pmu_event).put<std::uint64_t>(0x401000 /*ip*/);
    r.put<std::uint64_t>(0 /*data_addr*/).put<std::uint64_t>(s.flow_id).put<std::uint32_t>(s.gso_segs);
    r.put<std::uint16_t>(1 /*ingress_ifindex*/).put<std::uint16_t>(0 /*numa*/).put<std::uint8_t>(6 /*tcp*/);
    r.put<std::uint8_t>(s.direction).put<std::uint8_t>(0).put<std::uint8_t>(0);
    r.put<std::uint32_t>(0); // up to lbr at offset 64
    r.bytes.append(256, '\0');
    byte_builder f;
    f.put<std::uint32_t>(1).put<std::uint32_t>(std::uint32_t(r.bytes.size()));
    return f.bytes + r.bytes;
}

// A layout frame: the records that follow use `layout_id`.
inline std::string layout_frame(std::uint32_t layout_id)
{
    byte_builder f;
    f.put<std::uint32_t>(2).put<std::uint32_t>(10).put<std::uint32_t>(layout_id).put<std::uint32_t>(320);
    f.put<std::uint16_t>(0);
    return f.bytes;
}

inline std::string counters_frame(std::uint64_t emitted, std::uint64_t throttled, std::uint64_t ringbuf_full)
{
    byte_builder c;
    c.put<std::uint32_t>(3).put<std::uint32_t>(24).put<std::uint64_t>(emitted).put<std::uint64_t>(throttled);
    c.put<std::uint64_t>(ringbuf_full);
    return c.bytes;
}

// A v2 capture: the header, one sample frame per test_sample, a counters frame.
inline std::string make_v2_capture(const std::vector<test_sample>& samples, std::uint64_t throttled,
                                   std::uint64_t ringbuf_full)
{
    std::string out = capture_header_bytes(2);
    for (const auto& s : samples)
        out += sample_frame(s);
    return out + counters_frame(samples.size(), throttled, ringbuf_full);
}

} // namespace microsentinel::testing
