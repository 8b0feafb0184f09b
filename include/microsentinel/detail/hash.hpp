#pragma once
// Hashing with results fixed by this code alone (never std::hash, whose values
// belong to the standard library build): object ids are persisted, and the
// rollup's table needs a mixer that spreads structured keys (flow ids,
// page-aligned addresses) over every bit.
#include <cstdint>
#include <cstring>
#include <string_view>

namespace microsentinel::detail {

__extension__ typedef unsigned __int128 uint128;

// Multiply two words to 128 bits and fold the halves: every input bit reaches
// every output bit in one multiplication.
constexpr std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept
{
    const uint128 r = static_cast<uint128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline constexpr std::uint64_t hash_k0 = 0xa0761d6478bd642fULL;
inline constexpr std::uint64_t hash_k1 = 0xe7037ed1a0b428dbULL;
inline constexpr std::uint64_t hash_k2 = 0x8ebc6af09c88c6e3ULL;
inline constexpr std::uint64_t hash_k3 = 0x589965cc75374cc3ULL;

// Incremental hash of typed fields, stable across processes, builds and hosts
// of the same endianness. Every field is length-delimited so ("ab","c") and
// ("a","bc") differ.
class stable_hasher {
public:
    stable_hasher& add(std::uint64_t v) noexcept
    {
        state_ = mum(state_ ^ hash_k1, v ^ hash_k2);
        return *this;
    }

    stable_hasher& add(std::string_view s) noexcept
    {
        add(static_cast<std::uint64_t>(s.size()));
        std::size_t i = 0;
        for (; i + 8 <= s.size(); i += 8) {
            std::uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            add(w);
        }
        if (i < s.size()) {
            std::uint64_t w = 0;
            std::memcpy(&w, s.data() + i, s.size() - i);
            add(w);
        }
        return *this;
    }

    std::uint64_t finish() const noexcept { return mum(state_ ^ hash_k3, hash_k0); }

private:
    std::uint64_t state_ = hash_k0;
};

} // namespace microsentinel::detail
