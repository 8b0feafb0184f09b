#include <microsentinel/btf_layout.hpp>

#include <cstdio>

int main()
{
    struct btf* empty = btf__new_empty();
    try {
        microsentinel::negotiate_from_btf(empty, "empty BTF");
    } catch (const microsentinel::layout_error&) {
        btf__free(empty);
        return 0;
    }
    btf__free(empty);
    std::puts("negotiating from empty BTF should have failed");
    return 1;
}
