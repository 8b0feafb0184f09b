#include <microsentinel/microsentinel.hpp>

#include <cstdio>
#include <cstring>

int main()
{
    using namespace microsentinel;
    sample_decoder decoder(negotiate_from_layout_id(2, 320));
    unsigned char record[320] = {};
    const unsigned long long flow = 42;
    std::memcpy(record + 40, &flow, sizeof flow);
    record[57] = 1;
    sample s{};
    if (!decoder.decode(std::as_bytes(std::span(record)), s) || s.flow_id != 42 || s.dir != direction::tx) {
        std::puts("decode through the installed package failed");
        return 1;
    }
    return 0;
}
