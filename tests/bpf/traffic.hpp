#pragma once
// Loopback traffic with known 5-tuples: TCP and UDP echo pairs (IPv4, and IPv6
// when ::1 is configured), both sides busy between packets so that cpu-clock
// samples land while a flow context is current. Bounded by time.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "microsentinel/flow_id.h"

namespace microsentinel::testing {

struct flow_tuple {
    int family;    // AF_INET or AF_INET6
    std::uint8_t proto; // IPPROTO_TCP or IPPROTO_UDP
    std::array<std::uint32_t, 4> client_addr{}, server_addr{};
    std::uint16_t client_port = 0, server_port = 0; // host order

    std::uint64_t id() const
    {
        return ms_flow_id(family == AF_INET ? MS_FLOW_FAMILY_IPV4 : MS_FLOW_FAMILY_IPV6, proto, client_addr.data(),
                          client_port, server_addr.data(), server_port);
    }
    std::string describe() const
    {
        return std::string(proto == IPPROTO_TCP ? "tcp" : "udp") + (family == AF_INET ? "4" : "6") + " " +
               std::to_string(client_port) + "<->" + std::to_string(server_port);
    }
};

namespace detail {

inline void burn_cpu(std::chrono::microseconds d)
{
    const auto end = std::chrono::steady_clock::now() + d;
    volatile std::uint64_t x = 0;
    while (std::chrono::steady_clock::now() < end)
        for (int i = 0; i < 200; ++i)
            x = x + std::uint64_t(i);
}

struct fd_guard {
    int fd = -1;
    ~fd_guard()
    {
        if (fd >= 0)
            close(fd);
    }
};

inline std::array<std::uint32_t, 4> addr_words(const sockaddr_storage& ss)
{
    std::array<std::uint32_t, 4> w{};
    if (ss.ss_family == AF_INET)
        w[0] = reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr;
    else
        std::memcpy(w.data(), &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, 16);
    return w;
}

inline std::uint16_t port_of(const sockaddr_storage& ss)
{
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(ss).sin_port
                                         : reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

inline sockaddr_storage loopback(int family)
{
    sockaddr_storage ss{};
    if (family == AF_INET) {
        auto& a = reinterpret_cast<sockaddr_in&>(ss);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        auto& a = reinterpret_cast<sockaddr_in6&>(ss);
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
    }
    return ss;
}

inline void set_timeout(int fd)
{
    timeval tv{0, 100'000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

} // namespace detail

// One echo pair; run() exchanges messages until the deadline.
class echo_pair {
public:
    // False when the family is not available on loopback (e.g. no ::1).
    bool open(int family, std::uint8_t proto)
    {
        using namespace detail;
        const int type = proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
        sockaddr_storage addr = loopback(family);
        const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        int listener = socket(family, type, 0);
        if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
            if (listener >= 0)
                close(listener);
            return false;
        }
        sockaddr_storage server{};
        socklen_t slen = sizeof server;
        getsockname(listener, reinterpret_cast<sockaddr*>(&server), &slen);
        client_.fd = socket(family, type, 0);
        if (type == SOCK_DGRAM) {
            server_.fd = listener;
            bind(client_.fd, reinterpret_cast<sockaddr*>(&addr), len);
        } else {
            listen(listener, 1);
        }
        if (connect(client_.fd, reinterpret_cast<sockaddr*>(&server), slen) != 0) {
            close(listener);
            throw std::runtime_error("connect on loopback failed: " + std::string(std::strerror(errno)));
        }
        if (type == SOCK_STREAM) {
            server_.fd = accept(listener, nullptr, nullptr);
            close(listener);
        }
        sockaddr_storage client{};
        socklen_t clen = sizeof client;
        getsockname(client_.fd, reinterpret_cast<sockaddr*>(&client), &clen);
        if (type == SOCK_DGRAM)
            connect(server_.fd, reinterpret_cast<sockaddr*>(&client), clen);
        set_timeout(client_.fd);
        set_timeout(server_.fd);
        tuple.family = family;
        tuple.proto = proto;
        tuple.client_addr = addr_words(client);
        tuple.server_addr = addr_words(server);
        tuple.client_port = port_of(client);
        tuple.server_port = port_of(server);
        udp_ = type == SOCK_DGRAM;
        return true;
    }

    void run(std::chrono::steady_clock::time_point deadline, std::chrono::microseconds work)
    {
        std::thread server([&] { serve(deadline, work); });
        char buf[256] = {};
        while (std::chrono::steady_clock::now() < deadline) {
            detail::burn_cpu(work);
            if (send(client_.fd, buf, 64, 0) < 0)
                break;
            recv(client_.fd, buf, sizeof buf, 0);
            ++exchanges;
        }
        shutdown(client_.fd, SHUT_WR);
        server.join();
    }

    flow_tuple tuple;
    std::atomic<std::uint64_t> exchanges{0};

private:
    void serve(std::chrono::steady_clock::time_point deadline, std::chrono::microseconds work)
    {
        char buf[256];
        while (std::chrono::steady_clock::now() < deadline) {
            ssize_t n = recv(server_.fd, buf, sizeof buf, 0);
            if (n == 0 && !udp_)
                break;
            if (n < 0)
                continue;
            detail::burn_cpu(work);
            send(server_.fd, buf, size_t(n), 0);
        }
    }

    detail::fd_guard client_, server_;
    bool udp_ = false;
};

// TCP and UDP over IPv4, plus IPv6 when available, all running at once.
class loopback_traffic {
public:
    loopback_traffic()
    {
        for (int family : {AF_INET, AF_INET6})
            for (std::uint8_t proto : {std::uint8_t(IPPROTO_TCP), std::uint8_t(IPPROTO_UDP)}) {
                auto p = std::make_unique<echo_pair>();
                if (p->open(family, proto))
                    pairs_.push_back(std::move(p));
                else if (family == AF_INET)
                    throw std::runtime_error("cannot open an IPv4 loopback socket");
            }
    }

    void run_for(std::chrono::milliseconds d, std::chrono::microseconds work = std::chrono::microseconds(30))
    {
        const auto deadline = std::chrono::steady_clock::now() + d;
        std::vector<std::thread> threads;
        for (auto& p : pairs_)
            threads.emplace_back([&p, deadline, work] { p->run(deadline, work); });
        for (auto& t : threads)
            t.join();
    }

    std::vector<flow_tuple> flows() const
    {
        std::vector<flow_tuple> out;
        for (auto& p : pairs_)
            out.push_back(p->tuple);
        return out;
    }

    const echo_pair& pair(std::size_t i) const { return *pairs_.at(i); }
    std::size_t size() const noexcept { return pairs_.size(); }

private:
    std::vector<std::unique_ptr<echo_pair>> pairs_;
};

} // namespace microsentinel::testing
