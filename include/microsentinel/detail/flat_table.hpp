#pragma once
// A fixed-capacity open-addressing hash table for the rollup's hot path.
//
// Entries live densely in insertion order in one preallocated array; a slot
// array twice the capacity (load <= 1/2) maps hashes to entry indexes. A slot
// is one 32-bit word: (entry index + 1) << 7 | 7 hash bits, 0 = empty, so one
// linear probe sequence over contiguous memory decides most misses without
// touching an entry. Nothing allocates after construction: when the table
// holds max_entries keys, inserting a new key fails and the owner decides
// what to do (the rollup emits early). There is no per-key erase; extract_if
// moves a subset out and rebuilds the slots, which is cheap at the rate the
// rollup closes windows.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace microsentinel::detail {

template <class Key, class Value, class Hasher>
class flat_table {
public:
    struct entry {
        Key key;
        Value value;
    };

    static constexpr std::size_t max_supported_entries = (std::size_t{1} << 25) - 1;

    explicit flat_table(std::size_t max_entries) : max_entries_(max_entries)
    {
        if (max_entries == 0 || max_entries > max_supported_entries)
            throw std::invalid_argument("flat_table: max_entries must be between 1 and "
                                        + std::to_string(max_supported_entries) + ", got "
                                        + std::to_string(max_entries));
        std::size_t slots = 2;
        while (slots < 2 * max_entries)
            slots *= 2;
        slots_.assign(slots, 0);
        mask_ = slots - 1;
        entries_.reserve(max_entries);
    }

    // The value for key, inserted value-initialized if absent; nullptr when
    // the key is absent and the table is full.
    Value* find_or_insert(const Key& key) noexcept
    {
        const std::uint64_t h = Hasher{}(key);
        const std::uint32_t tag = static_cast<std::uint32_t>(h & tag_mask);
        std::size_t pos = static_cast<std::size_t>(h >> 7) & mask_;
        for (;;) {
            const std::uint32_t slot = slots_[pos];
            if (slot == 0) {
                if (entries_.size() == max_entries_)
                    return nullptr;
                slots_[pos] = make_slot(entries_.size(), tag);
                entries_.push_back(entry{key, Value{}});
                return &entries_.back().value;
            }
            if ((slot & tag_mask) == tag) {
                entry& e = entries_[(slot >> 7) - 1];
                if (e.key == key)
                    return &e.value;
            }
            pos = (pos + 1) & mask_;
        }
    }

    std::span<entry> entries() noexcept { return entries_; }
    std::span<const entry> entries() const noexcept { return entries_; }
    std::size_t size() const noexcept { return entries_.size(); }
    bool full() const noexcept { return entries_.size() == max_entries_; }
    std::size_t max_entries() const noexcept { return max_entries_; }
    std::size_t slot_count() const noexcept { return slots_.size(); }
    // Bytes held, fixed at construction.
    std::size_t memory_bytes() const noexcept
    {
        return slots_.capacity() * sizeof(std::uint32_t) + entries_.capacity() * sizeof(entry);
    }

    void clear() noexcept
    {
        std::fill(slots_.begin(), slots_.end(), 0u);
        entries_.clear();
    }

    // Calls out(entry) for every entry matching pred, in insertion order, and
    // removes them; the others keep their relative order.
    template <class Pred, class Out>
    void extract_if(Pred pred, Out out)
    {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            if (pred(entries_[i]))
                out(entries_[i]);
            else
                entries_[kept++] = entries_[i];
        }
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(kept), entries_.end());
        rebuild_slots();
    }

private:
    static constexpr std::uint32_t tag_mask = 0x7f;

    static std::uint32_t make_slot(std::size_t index, std::uint32_t tag) noexcept
    {
        return static_cast<std::uint32_t>((index + 1) << 7) | tag;
    }

    void rebuild_slots() noexcept
    {
        std::fill(slots_.begin(), slots_.end(), 0u);
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            const std::uint64_t h = Hasher{}(entries_[i].key);
            std::size_t pos = static_cast<std::size_t>(h >> 7) & mask_;
            while (slots_[pos] != 0)
                pos = (pos + 1) & mask_;
            slots_[pos] = make_slot(i, static_cast<std::uint32_t>(h & tag_mask));
        }
    }

    std::size_t max_entries_;
    std::size_t mask_ = 0;
    std::vector<std::uint32_t> slots_;
    std::vector<entry> entries_;
};

} // namespace microsentinel::detail
