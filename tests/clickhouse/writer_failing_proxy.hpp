#pragma once
// A test-only HTTP proxy in front of a REAL server. Modes: relay bytes both
// ways unchanged; answer every request with HTTP 500 (after reading it whole),
// for "the server answers 500 for a while"; or pass the request on and drop
// the server's answer, for an insert that committed but whose answer was lost.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace microsentinel::testing {

class failing_proxy {
public:
    explicit failing_proxy(std::uint16_t upstream_port) : upstream_(upstream_port)
    {
        listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
            getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("failing_proxy: cannot listen on loopback");
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    ~failing_proxy()
    {
        stop_ = true;
        shutdown(listen_fd_, SHUT_RDWR);
        close(listen_fd_);
        acceptor_.join();
        for (auto& t : connections_)
            t.join();
    }

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
    void set_failing(bool f) { failing_ = f; }
    void set_losing_answers(bool l) { losing_ = l; }
    std::uint64_t failed_requests() const { return failed_requests_; }
    std::uint64_t lost_answers() const { return lost_answers_; }
    std::uint64_t connections() const { return connections_accepted_; }

private:
    void accept_loop()
    {
        while (!stop_) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            int fd = accept(listen_fd_, nullptr, nullptr);
            if (fd < 0)
                continue;
            ++connections_accepted_;
            connections_.emplace_back([this, fd] { serve(fd); });
        }
    }

    // Reads one request: headers and a Content-Length body.
    bool read_request(int fd, std::string& req)
    {
        char buf[65536];
        std::size_t need = std::string::npos;
        while (!stop_) {
            auto end = req.find("\r\n\r\n");
            if (end != std::string::npos && need == std::string::npos) {
                need = end + 4;
                auto cl = req.find("Content-Length: ");
                if (cl != std::string::npos && cl < end)
                    need += std::stoul(req.substr(cl + 16));
            }
            if (need != std::string::npos && req.size() >= need)
                break;
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                return false;
            req.append(buf, std::size_t(n));
        }
        return true;
    }

    void fail_one(int fd)
    {
        std::string req;
        if (!read_request(fd, req))
            return;
        const std::string body = "Code: 999, e.displayText() = DB::Exception: injected failure by the test proxy\n";
        std::string resp = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\nConnection: close\r\n\r\n" + body;
        (void)!write(fd, resp.data(), resp.size());
        ++failed_requests_;
    }

    // Sends the request to the server, waits for its answer, then closes the
    // client's connection without passing the answer on.
    void lose_answer(int fd)
    {
        std::string req;
        if (!read_request(fd, req))
            return;
        int up = connect_upstream();
        if (up < 0)
            return;
        for (std::size_t off = 0; off < req.size();) {
            ssize_t w = write(up, req.data() + off, req.size() - off);
            if (w <= 0)
                break;
            off += std::size_t(w);
        }
        char buf[4096];
        pollfd p{up, POLLIN, 0};
        if (poll(&p, 1, 10000) > 0 && read(up, buf, sizeof buf) > 0)
            ++lost_answers_; // the server answered: the insert is done, the client never hears it
        close(up);
    }

    int connect_upstream()
    {
        int up = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(upstream_);
        if (connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            close(up);
            return -1;
        }
        return up;
    }

    void relay(int fd)
    {
        int up = connect_upstream();
        if (up < 0)
            return;
        char buf[65536];
        pollfd p[2] = {{fd, POLLIN, 0}, {up, POLLIN, 0}};
        // Switching to failing drops relayed keep-alive connections, so the
        // client's next request meets the failure.
        while (!stop_ && !failing_ && !losing_) {
            if (poll(p, 2, 100) <= 0 || failing_ || losing_)
                continue;
            bool closed = false;
            for (int i = 0; i < 2 && !closed; ++i) {
                if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t n = read(p[i].fd, buf, sizeof buf);
                if (n <= 0) {
                    closed = true;
                    break;
                }
                int to = p[1 - i].fd;
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(to, buf + off, std::size_t(n - off));
                    if (w <= 0) {
                        closed = true;
                        break;
                    }
                    off += w;
                }
            }
            if (closed)
                break;
        }
        close(up);
    }

    void serve(int fd)
    {
        if (failing_)
            fail_one(fd);
        else if (losing_)
            lose_answer(fd);
        else
            relay(fd);
        close(fd);
    }

    std::uint16_t upstream_;
    std::uint16_t port_ = 0;
    int listen_fd_ = -1;
    std::atomic<bool> stop_{false};
    std::atomic<bool> failing_{false};
    std::atomic<bool> losing_{false};
    std::atomic<std::uint64_t> lost_answers_{0};
    std::atomic<std::uint64_t> failed_requests_{0};
    std::atomic<std::uint64_t> connections_accepted_{0};
    std::thread acceptor_;
    std::vector<std::thread> connections_;
};

} // namespace microsentinel::testing
