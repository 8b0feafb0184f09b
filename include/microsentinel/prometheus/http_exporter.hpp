#pragma once
// A small HTTP/1.1 server for GET /metrics. One thread accepts; each
// connection gets its own thread (up to max_connections) with one deadline for
// reading the request and writing the response, so a slow or hostile client
// holds only its own thread, and only until io_timeout. Connections close after
// one response.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "format.hpp"
#include "render.hpp"
#include "snapshot.hpp"

namespace microsentinel::prometheus {

struct http_options {
    std::string listen = "127.0.0.1:9105";          // HOST:PORT; [v6]:PORT; port 0 picks a free port
    std::chrono::milliseconds io_timeout{10'000};   // per connection: whole request in, whole response out
    std::size_t max_connections = 16;               // beyond this, new connections get 503 at once
    std::size_t max_request_bytes = 16 * 1024;      // request line and headers
};

class http_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

inline std::string errno_text(int err) { return std::strerror(err); }

class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept
    {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

inline std::pair<std::string, std::string> split_listen_address(std::string_view listen)
{
    const auto colon = listen.rfind(':');
    const std::string hint = "'" + std::string(listen) + "': expected HOST:PORT, e.g. 127.0.0.1:9105 or [::1]:9105";
    if (colon == std::string_view::npos)
        throw http_error("listen address " + hint);
    std::string_view host = listen.substr(0, colon);
    std::string_view port = listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535)
        throw http_error("listen address " + hint);
    return {std::string(host), std::string(port)};
}

inline std::string format_address(const sockaddr_storage& addr)
{
    char host[INET6_ADDRSTRLEN] = {};
    std::uint16_t port = 0;
    if (addr.ss_family == AF_INET6) {
        const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
        inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
        port = ntohs(a.sin6_port);
        return "[" + std::string(host) + "]:" + std::to_string(port);
    }
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
    port = ntohs(a.sin_port);
    return std::string(host) + ":" + std::to_string(port);
}

inline unique_fd listen_on(const std::string& listen, std::string& bound, std::uint16_t& bound_port)
{
    auto [host, port] = split_listen_address(listen);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0)
        throw http_error("cannot resolve listen address '" + listen + "': " + gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    int last_errno = 0;
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
        unique_fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
        if (fd.get() < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 64) != 0) {
            last_errno = errno;
            continue;
        }
        sockaddr_storage addr{};
        socklen_t len = sizeof addr;
        getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
        bound = format_address(addr);
        bound_port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port
                                                      : reinterpret_cast<sockaddr_in&>(addr).sin_port);
        return fd;
    }
    throw http_error("cannot listen on " + listen + ": " + errno_text(last_errno) +
                     "; choose another address with --listen, or stop the process that uses it");
}

inline bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept
{
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

struct request {
    std::string_view method;
    std::string_view path; // without the query string
    std::string_view accept;
};

// Parses the request line and the one header we use; false when malformed.
inline bool parse_request(std::string_view head, request& out) noexcept
{
    auto eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    auto sp1 = line.find(' ');
    auto sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1 || !line.substr(sp2 + 1).starts_with("HTTP/1."))
        return false;
    out.method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    out.path = target.substr(0, target.find('?'));
    out.accept = {};
    head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
    while (!head.empty()) {
        eol = head.find("\r\n");
        std::string_view h = head.substr(0, eol);
        if (starts_with_icase(h, "accept:"))
            out.accept = trim(h.substr(7));
        head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
    }
    return true;
}

} // namespace detail

class http_exporter {
public:
    using clock = std::chrono::steady_clock;
    using snapshot_provider = std::function<std::shared_ptr<const metrics_snapshot>()>;

    // Binds and listens at once (an unusable address throws http_error here),
    // then serves from a background thread until stop() or destruction.
    http_exporter(http_options options, snapshot_provider provider)
        : options_(std::move(options)), provider_(std::move(provider))
    {
        if (options_.max_connections == 0)
            throw http_error("http_options.max_connections is 0; allow at least one connection");
        listen_fd_ = detail::listen_on(options_.listen, bound_, port_);
        wake_fd_ = detail::unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (wake_fd_.get() < 0)
            throw http_error("eventfd: " + detail::errno_text(errno));
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    http_exporter(const http_exporter&) = delete;
    http_exporter& operator=(const http_exporter&) = delete;
    ~http_exporter() { stop(); }

    // The address actually bound, e.g. "127.0.0.1:9105" (useful with port 0).
    const std::string& address() const noexcept { return bound_; }
    std::uint16_t port() const noexcept { return port_; }

    http_stats stats() const noexcept
    {
        http_stats s;
        s.scrapes = scrapes_.load();
        s.not_found = not_found_.load();
        s.method_not_allowed = method_not_allowed_.load();
        s.bad_requests = bad_requests_.load();
        s.rejected_busy = rejected_busy_.load();
        s.timed_out = timed_out_.load();
        s.aborted = aborted_.load();
        return s;
    }

    // Stops accepting, wakes every connection and joins all threads.
    void stop() noexcept
    {
        if (!acceptor_.joinable())
            return;
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
        acceptor_.join();
        for (auto& w : workers_)
            w.thread.join();
        workers_.clear();
        listen_fd_.reset();
    }

private:
    struct worker {
        std::thread thread;
        std::atomic<bool> done{false};
    };

    void reap_finished_workers()
    {
        for (auto it = workers_.begin(); it != workers_.end();) {
            if (it->done.load(std::memory_order_acquire)) {
                it->thread.join();
                it = workers_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void accept_loop()
    {
        for (;;) {
            pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
            if (::poll(fds, 2, 1000) < 0 && errno != EINTR)
                return;
            reap_finished_workers();
            if (fds[1].revents != 0)
                return;
            if ((fds[0].revents & POLLIN) == 0)
                continue;
            detail::unique_fd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
            if (conn.get() < 0) {
                // Out of descriptors: back off instead of spinning on a ready listener.
                if (errno == EMFILE || errno == ENFILE)
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            if (workers_.size() >= options_.max_connections) {
                reject_busy(conn.get());
                continue;
            }
            auto& w = workers_.emplace_back();
            const int fd = conn.get();
            try {
                w.thread = std::thread([this, &w, fd] {
                    try {
                        serve(fd);
                    } catch (const std::exception&) {
                        ++aborted_; // out of memory while rendering: this scrape fails, the server goes on
                    }
                    ::close(fd);
                    w.done.store(true, std::memory_order_release);
                });
                conn.release(); // the thread closes it
            } catch (const std::system_error&) {
                // No thread to be had (resource limits): answer like a full house.
                workers_.pop_back();
                reject_busy(fd);
            }
        }
    }

    void reject_busy(int fd)
    {
        static constexpr std::string_view busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 35\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
            "too many concurrent scrapes; retry\n";
        [[maybe_unused]] auto n = ::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ++rejected_busy_;
    }

    // Waits until `fd` is ready for `events`; false on the deadline or stop().
    bool wait_for(int fd, short events, clock::time_point deadline) const noexcept
    {
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            if (left.count() <= 0)
                return false;
            pollfd fds[2] = {{fd, events, 0}, {wake_fd_.get(), POLLIN, 0}};
            int n = ::poll(fds, 2, int(std::min<std::int64_t>(left.count() + 1, 60'000)));
            if (n < 0 && errno != EINTR)
                return false;
            if (fds[1].revents != 0)
                return false;
            if (fds[0].revents != 0)
                return true;
        }
    }

    enum class send_result { ok, timed_out, aborted };

    send_result send_all(int fd, std::string_view data, clock::time_point deadline) const noexcept
    {
        while (!data.empty()) {
            ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n > 0) {
                data.remove_prefix(std::size_t(n));
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait_for(fd, POLLOUT, deadline))
                    return send_result::timed_out;
                continue;
            }
            return send_result::aborted;
        }
        return send_result::ok;
    }

    // Counts `outcome` once the whole response went out (before the client can
    // see the end of it), or a timeout or abort.
    void respond(int fd, std::string_view status, std::string_view content_type, std::string_view extra_headers,
                 std::string_view body, clock::time_point deadline, std::atomic<std::uint64_t>& outcome)
    {
        std::string head;
        head.reserve(256);
        head += "HTTP/1.1 ";
        head += status;
        head += "\r\nContent-Type: ";
        head += content_type;
        head += "\r\nContent-Length: ";
        append_uint(head, body.size());
        head += "\r\nConnection: close\r\n";
        head += extra_headers;
        head += "\r\n";
        send_result r = send_all(fd, head, deadline);
        if (r == send_result::ok)
            r = send_all(fd, body, deadline);
        if (r == send_result::timed_out)
            ++timed_out_;
        else if (r == send_result::aborted)
            ++aborted_;
        if (r != send_result::ok)
            return;
        ++outcome;
        // Half-close, and read what the client already sent beyond the request,
        // so that closing does not reset the connection under the response.
        // Waiting for the client to close would hold a slot for its whole RTT.
        ::shutdown(fd, SHUT_WR);
        char sink[512];
        while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
        }
    }

    void serve(int fd)
    {
        const auto deadline = clock::now() + options_.io_timeout;
        std::string head;
        char buf[2048];
        std::size_t end;
        while ((end = head.find("\r\n\r\n")) == std::string::npos) {
            if (head.size() > options_.max_request_bytes) {
                respond(fd, "431 Request Header Fields Too Large", "text/plain; charset=utf-8", "",
                            "request headers too large\n", deadline, bad_requests_);
                return;
            }
            if (!wait_for(fd, POLLIN, deadline)) {
                ++timed_out_;
                return;
            }
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n > 0)
                head.append(buf, std::size_t(n));
            else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
                ++aborted_;
                return;
            }
        }
        detail::request req;
        if (!detail::parse_request(std::string_view(head).substr(0, end), req)) {
            respond(fd, "400 Bad Request", "text/plain; charset=utf-8", "", "malformed HTTP request\n",
                        deadline, bad_requests_);
            return;
        }
        if (req.path != "/metrics") {
            respond(fd, "404 Not Found", "text/plain; charset=utf-8", "", "not found; metrics are at /metrics\n",
                        deadline, not_found_);
            return;
        }
        if (req.method != "GET") {
            respond(fd, "405 Method Not Allowed", "text/plain; charset=utf-8", "Allow: GET\r\n",
                        "method not allowed; use GET /metrics\n", deadline, method_not_allowed_);
            return;
        }
        const exposition_format format = negotiate_format(req.accept);
        static const metrics_snapshot empty;
        std::shared_ptr<const metrics_snapshot> snapshot = provider_();
        std::string body;
        render(snapshot ? *snapshot : empty, format, body);
        respond(fd, "200 OK", content_type(format), "", body, deadline, scrapes_);
    }

    http_options options_;
    snapshot_provider provider_;
    detail::unique_fd listen_fd_;
    detail::unique_fd wake_fd_;
    std::string bound_;
    std::uint16_t port_ = 0;
    std::list<worker> workers_; // touched by the acceptor thread, and by stop() after it ended
    std::thread acceptor_;
    std::atomic<std::uint64_t> scrapes_{0}, not_found_{0}, method_not_allowed_{0}, bad_requests_{0},
        rejected_busy_{0}, timed_out_{0}, aborted_{0};
};

} // namespace microsentinel::prometheus
