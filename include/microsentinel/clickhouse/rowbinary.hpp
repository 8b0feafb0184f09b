#pragma once
// ClickHouse column types as the writer needs them, and their RowBinary
// encoding: little-endian fixed-width numbers, LEB128-prefixed strings and
// arrays, a 0/1 byte before a Nullable value.
//
// The writer encodes by the SERVER's column type (read from system.columns),
// so one field can land in DateTime on an 18.16 server and in DateTime64(9)
// on a current one.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace microsentinel::clickhouse {

static_assert(std::endian::native == std::endian::little, "RowBinary is little-endian; big-endian hosts are not supported");

enum class type_kind : std::uint8_t {
    uint8, uint16, uint32, uint64,
    int8, int16, int32, int64,
    float32, float64,
    date,       // UInt16 days since epoch
    datetime,   // UInt32 seconds since epoch
    datetime64, // Int64 ticks of 10^-precision s
    string,     // also LowCardinality(String), which RowBinary sends as String
    array_uint64,
};

struct column_type {
    type_kind kind;
    bool nullable = false;
    std::uint8_t precision = 0; // DateTime64 only

    friend bool operator==(const column_type&, const column_type&) = default;
};

namespace detail {

inline std::string_view strip_wrapper(std::string_view t, std::string_view wrapper, bool& found)
{
    if (t.size() > wrapper.size() + 1 && t.substr(0, wrapper.size()) == wrapper && t[wrapper.size()] == '(' && t.back() == ')') {
        found = true;
        return t.substr(wrapper.size() + 1, t.size() - wrapper.size() - 2);
    }
    return t;
}

inline bool starts_with_call(std::string_view t, std::string_view name)
{
    return t.size() > name.size() && t.substr(0, name.size()) == name && t[name.size()] == '(';
}

} // namespace detail

// Parses a type name as system.columns prints it. nullopt for types the
// writer does not produce (it then leaves that column out of the INSERT).
inline std::optional<column_type> parse_column_type(std::string_view t)
{
    bool nullable = false, low_cardinality = false;
    t = detail::strip_wrapper(t, "LowCardinality", low_cardinality);
    t = detail::strip_wrapper(t, "Nullable", nullable);
    t = detail::strip_wrapper(t, "LowCardinality", low_cardinality);
    column_type c{type_kind::uint8, nullable, 0};
    struct named { std::string_view name; type_kind kind; };
    static constexpr named plain[] = {
        {"UInt8", type_kind::uint8},     {"UInt16", type_kind::uint16},   {"UInt32", type_kind::uint32},
        {"UInt64", type_kind::uint64},   {"Int8", type_kind::int8},       {"Int16", type_kind::int16},
        {"Int32", type_kind::int32},     {"Int64", type_kind::int64},     {"Float32", type_kind::float32},
        {"Float64", type_kind::float64}, {"Date", type_kind::date},       {"DateTime", type_kind::datetime},
        {"String", type_kind::string},   {"Array(UInt64)", type_kind::array_uint64},
    };
    for (const auto& p : plain)
        if (t == p.name) {
            c.kind = p.kind;
            return c;
        }
    // Enums travel as their underlying integer.
    if (detail::starts_with_call(t, "Enum8")) {
        c.kind = type_kind::int8;
        return c;
    }
    if (detail::starts_with_call(t, "Enum16")) {
        c.kind = type_kind::int16;
        return c;
    }
    // DateTime('UTC') carries a time zone that does not change the encoding.
    if (detail::starts_with_call(t, "DateTime") && t.back() == ')') {
        c.kind = type_kind::datetime;
        return c;
    }
    if (detail::starts_with_call(t, "DateTime64") && t.back() == ')') {
        std::string_view args = t.substr(11, t.size() - 12);
        unsigned p = 0;
        std::size_t i = 0;
        for (; i < args.size() && args[i] >= '0' && args[i] <= '9'; ++i)
            p = p * 10 + unsigned(args[i] - '0');
        if (i == 0 || p > 9)
            return std::nullopt;
        c.kind = type_kind::datetime64;
        c.precision = std::uint8_t(p);
        return c;
    }
    return std::nullopt;
}

inline std::string to_string(const column_type& c)
{
    std::string inner;
    switch (c.kind) {
    case type_kind::uint8: inner = "UInt8"; break;
    case type_kind::uint16: inner = "UInt16"; break;
    case type_kind::uint32: inner = "UInt32"; break;
    case type_kind::uint64: inner = "UInt64"; break;
    case type_kind::int8: inner = "Int8"; break;
    case type_kind::int16: inner = "Int16"; break;
    case type_kind::int32: inner = "Int32"; break;
    case type_kind::int64: inner = "Int64"; break;
    case type_kind::float32: inner = "Float32"; break;
    case type_kind::float64: inner = "Float64"; break;
    case type_kind::date: inner = "Date"; break;
    case type_kind::datetime: inner = "DateTime"; break;
    case type_kind::datetime64: inner = "DateTime64(" + std::to_string(c.precision) + ")"; break;
    case type_kind::string: inner = "String"; break;
    case type_kind::array_uint64: inner = "Array(UInt64)"; break;
    }
    return c.nullable ? "Nullable(" + inner + ")" : inner;
}

// One value on its way into a column: what the writer's fields produce and
// what the spool re-encoder reads back.
struct cell {
    enum class kind : std::uint8_t { unsigned_int, signed_int, real, time_ns, text, u64_array, null };
    kind k = kind::null;
    std::uint64_t u = 0; // unsigned_int; time_ns (ns since the epoch); signed_int as two's complement
    double d = 0;
    std::string_view s;          // text
    std::span<const std::byte> a; // u64_array: 8 bytes per element, little-endian

    static cell of_unsigned(std::uint64_t v) noexcept { return make(kind::unsigned_int, v); }
    static cell of_signed(std::int64_t v) noexcept { return make(kind::signed_int, std::uint64_t(v)); }
    static cell of_time_ns(std::uint64_t ns) noexcept { return make(kind::time_ns, ns); }
    static cell of_real(double v) noexcept
    {
        cell c = make(kind::real, 0);
        c.d = v;
        return c;
    }
    static cell of_text(std::string_view v) noexcept
    {
        cell c = make(kind::text, 0);
        c.s = v;
        return c;
    }
    static cell of_u64_array(std::span<const std::byte> v) noexcept
    {
        cell c = make(kind::u64_array, 0);
        c.a = v;
        return c;
    }
    static cell null() noexcept { return make(kind::null, 0); }

private:
    static cell make(kind k, std::uint64_t u) noexcept
    {
        cell c;
        c.k = k;
        c.u = u;
        return c;
    }
};

// An append-only RowBinary buffer. Grows geometrically; a reused buffer
// (clear() keeps capacity) costs no allocation per row.
class rowbinary_buffer {
public:
    void reserve(std::size_t n) { bytes_.reserve(n); }
    void clear() noexcept { bytes_.clear(); }
    std::size_t size() const noexcept { return bytes_.size(); }
    std::string_view view() const noexcept { return bytes_; }
    std::string take() noexcept { return std::move(bytes_); }

    template<class T>
    void put(T v)
    {
        static_assert(std::is_trivially_copyable_v<T>);
        char raw[sizeof(T)];
        std::memcpy(raw, &v, sizeof(T));
        bytes_.append(raw, sizeof(T));
    }

    void put_varuint(std::uint64_t v)
    {
        char raw[10];
        std::size_t n = 0;
        do {
            std::uint8_t b = v & 0x7f;
            v >>= 7;
            raw[n++] = char(v ? b | 0x80 : b);
        } while (v);
        bytes_.append(raw, n);
    }

    void put_string(std::string_view s)
    {
        put_varuint(s.size());
        bytes_.append(s.data(), s.size());
    }

    void put_raw(const void* p, std::size_t n) { bytes_.append(static_cast<const char*>(p), n); }

    // Encodes `v` as a value of column type `t`. Integers narrow to the
    // column's width; a time goes to seconds, days or ticks as the type asks.
    // Returns false when the value cannot go into that type (caller decides).
    bool put_cell(const column_type& t, const cell& v)
    {
        if (t.nullable) {
            bool is_null = v.k == cell::kind::null;
            put<std::uint8_t>(is_null ? 1 : 0);
            if (is_null)
                return true;
        } else if (v.k == cell::kind::null) {
            return put_default(t);
        }
        switch (t.kind) {
        case type_kind::uint8: case type_kind::int8: put(std::uint8_t(as_integer(v))); return numeric(v);
        case type_kind::uint16: case type_kind::int16: put(std::uint16_t(as_integer(v))); return numeric(v);
        case type_kind::uint32: case type_kind::int32: put(std::uint32_t(as_integer(v))); return numeric(v);
        case type_kind::uint64: case type_kind::int64: put(as_integer(v)); return numeric(v);
        case type_kind::float32: put(float(as_real(v))); return numeric(v);
        case type_kind::float64: put(as_real(v)); return numeric(v);
        case type_kind::date: put(std::uint16_t(as_time_ns(v) / 86'400'000'000'000ull)); return numeric(v);
        case type_kind::datetime: put(std::uint32_t(as_time_ns(v) / 1'000'000'000ull)); return numeric(v);
        case type_kind::datetime64: put(std::int64_t(as_time_ns(v) / pow10(9 - t.precision))); return numeric(v);
        case type_kind::string:
            if (v.k != cell::kind::text) {
                put_string({});
                return false;
            }
            put_string(v.s);
            return true;
        case type_kind::array_uint64:
            if (v.k != cell::kind::u64_array) {
                put_varuint(0);
                return false;
            }
            put_varuint(v.a.size() / 8);
            bytes_.append(reinterpret_cast<const char*>(v.a.data()), v.a.size() / 8 * 8);
            return true;
        }
        return false;
    }

private:
    static bool numeric(const cell& v) noexcept { return v.k != cell::kind::text && v.k != cell::kind::u64_array; }

    static std::uint64_t as_integer(const cell& v) noexcept
    {
        if (v.k == cell::kind::real)
            return std::uint64_t(std::int64_t(v.d));
        return v.u;
    }
    static double as_real(const cell& v) noexcept
    {
        if (v.k == cell::kind::real)
            return v.d;
        if (v.k == cell::kind::signed_int)
            return double(std::int64_t(v.u));
        return double(v.u);
    }
    // A plain integer going into a time column is taken as ns since the epoch.
    static std::uint64_t as_time_ns(const cell& v) noexcept { return v.k == cell::kind::real ? std::uint64_t(v.d) : v.u; }
    static constexpr std::uint64_t pow10(unsigned e) noexcept
    {
        std::uint64_t r = 1;
        while (e--)
            r *= 10;
        return r;
    }

    bool put_default(const column_type& t)
    {
        column_type plain = t;
        plain.nullable = false;
        switch (t.kind) {
        case type_kind::string: return put_cell(plain, cell::of_text({}));
        case type_kind::array_uint64: return put_cell(plain, cell::of_u64_array({}));
        default: return put_cell(plain, cell::of_unsigned(0));
        }
    }

    std::string bytes_;
};

// Reads values back from a RowBinary payload: the spool re-encodes a batch
// written for one schema into another (a column dropped or retyped since).
class rowbinary_reader {
public:
    explicit rowbinary_reader(std::string_view payload) noexcept : data_(payload) {}

    bool at_end() const noexcept { return pos_ == data_.size(); }
    std::size_t position() const noexcept { return pos_; }

    // False when the payload ends early or is malformed.
    bool read_cell(const column_type& t, cell& out) noexcept
    {
        if (t.nullable) {
            std::uint8_t flag;
            if (!get(flag))
                return false;
            if (flag) {
                out = cell::null();
                return true;
            }
        }
        switch (t.kind) {
        case type_kind::uint8: return get_unsigned<std::uint8_t>(out);
        case type_kind::uint16: return get_unsigned<std::uint16_t>(out);
        case type_kind::uint32: return get_unsigned<std::uint32_t>(out);
        case type_kind::uint64: return get_unsigned<std::uint64_t>(out);
        case type_kind::int8: return get_signed<std::int8_t>(out);
        case type_kind::int16: return get_signed<std::int16_t>(out);
        case type_kind::int32: return get_signed<std::int32_t>(out);
        case type_kind::int64: return get_signed<std::int64_t>(out);
        case type_kind::float32: {
            float f;
            if (!get(f))
                return false;
            out = cell::of_real(f);
            return true;
        }
        case type_kind::float64: {
            double f;
            if (!get(f))
                return false;
            out = cell::of_real(f);
            return true;
        }
        case type_kind::date: {
            std::uint16_t days;
            if (!get(days))
                return false;
            out = cell::of_time_ns(days * 86'400'000'000'000ull);
            return true;
        }
        case type_kind::datetime: {
            std::uint32_t s;
            if (!get(s))
                return false;
            out = cell::of_time_ns(s * 1'000'000'000ull);
            return true;
        }
        case type_kind::datetime64: {
            std::int64_t ticks;
            if (!get(ticks))
                return false;
            std::uint64_t scale = 1;
            for (unsigned i = t.precision; i < 9; ++i)
                scale *= 10;
            out = cell::of_time_ns(std::uint64_t(ticks) * scale);
            return true;
        }
        case type_kind::string: {
            std::uint64_t n;
            if (!get_varuint(n) || n > data_.size() - pos_)
                return false;
            out = cell::of_text(data_.substr(pos_, n));
            pos_ += n;
            return true;
        }
        case type_kind::array_uint64: {
            std::uint64_t n;
            if (!get_varuint(n) || n > (data_.size() - pos_) / 8)
                return false;
            out = cell::of_u64_array({reinterpret_cast<const std::byte*>(data_.data() + pos_), n * 8});
            pos_ += n * 8;
            return true;
        }
        }
        return false;
    }

private:
    template<class T>
    bool get(T& v) noexcept
    {
        if (data_.size() - pos_ < sizeof(T))
            return false;
        std::memcpy(&v, data_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return true;
    }
    template<class T>
    bool get_unsigned(cell& out) noexcept
    {
        T v;
        if (!get(v))
            return false;
        out = cell::of_unsigned(v);
        return true;
    }
    template<class T>
    bool get_signed(cell& out) noexcept
    {
        T v;
        if (!get(v))
            return false;
        out = cell::of_signed(v);
        return true;
    }
    bool get_varuint(std::uint64_t& v) noexcept
    {
        v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
            std::uint8_t b;
            if (!get(b))
                return false;
            v |= std::uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80))
                return true;
        }
        return false;
    }

    std::string_view data_;
    std::size_t pos_ = 0;
};

} // namespace microsentinel::clickhouse
