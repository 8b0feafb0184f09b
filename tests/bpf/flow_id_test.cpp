// flow_id.h: the same id from both ends of a connection, distinct ids for
// distinct connections, never 0.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <set>

#include "microsentinel/flow_id.h"

namespace {

__u32 v4(const char* text)
{
    in_addr a{};
    REQUIRE(inet_pton(AF_INET, text, &a) == 1);
    return a.s_addr;
}

struct v6_words {
    __u32 w[4];
};

v6_words v6(const char* text)
{
    v6_words out{};
    REQUIRE(inet_pton(AF_INET6, text, out.w) == 1);
    return out;
}

} // namespace

TEST_CASE("both directions of an IPv4 connection have one flow id")
{
    const __u32 a = v4("10.0.0.1"), b = v4("10.0.0.2");
    for (__u8 proto : {__u8(IPPROTO_TCP), __u8(IPPROTO_UDP)}) {
        CAPTURE(int(proto));
        CHECK(ms_flow_id_v4(proto, a, 40000, b, 443) == ms_flow_id_v4(proto, b, 443, a, 40000));
    }
}

TEST_CASE("both directions of an IPv6 connection have one flow id")
{
    v6_words a = v6("2001:db8::1"), b = v6("2001:db8::2");
    CHECK(ms_flow_id(MS_FLOW_FAMILY_IPV6, IPPROTO_TCP, a.w, 5555, b.w, 80) ==
          ms_flow_id(MS_FLOW_FAMILY_IPV6, IPPROTO_TCP, b.w, 80, a.w, 5555));
}

TEST_CASE("same addresses, ports swapped between the endpoints, is another connection")
{
    const __u32 a = v4("127.0.0.1"), b = v4("127.0.0.2");
    CHECK(ms_flow_id_v4(IPPROTO_TCP, a, 1000, b, 2000) != ms_flow_id_v4(IPPROTO_TCP, a, 2000, b, 1000));
}

TEST_CASE("loopback connections on one address order endpoints by port")
{
    const __u32 lo = v4("127.0.0.1");
    CHECK(ms_flow_id_v4(IPPROTO_UDP, lo, 50000, lo, 9000) == ms_flow_id_v4(IPPROTO_UDP, lo, 9000, lo, 50000));
    CHECK(ms_flow_id_v4(IPPROTO_UDP, lo, 50000, lo, 9000) != ms_flow_id_v4(IPPROTO_UDP, lo, 50001, lo, 9000));
}

TEST_CASE("protocol and address family are part of the id")
{
    const __u32 a = v4("192.168.1.1"), b = v4("192.168.1.2");
    CHECK(ms_flow_id_v4(IPPROTO_TCP, a, 1, b, 2) != ms_flow_id_v4(IPPROTO_UDP, a, 1, b, 2));
    __u32 a6[4] = {a, 0, 0, 0}, b6[4] = {b, 0, 0, 0};
    CHECK(ms_flow_id(MS_FLOW_FAMILY_IPV6, IPPROTO_TCP, a6, 1, b6, 2) != ms_flow_id_v4(IPPROTO_TCP, a, 1, b, 2));
    CHECK(ms_flow_id(MS_FLOW_FAMILY_IPV4, IPPROTO_TCP, a6, 1, b6, 2) == ms_flow_id_v4(IPPROTO_TCP, a, 1, b, 2));
}

TEST_CASE("ids of many distinct connections do not collide and are never 0")
{
    std::set<__u64> ids;
    const __u32 lo = v4("127.0.0.1");
    for (__u16 port = 1; port <= 20000; ++port) {
        __u64 id = ms_flow_id_v4(IPPROTO_TCP, lo, port, lo, 65535);
        CHECK(id != 0);
        ids.insert(id);
    }
    CHECK(ids.size() == 20000);
}
