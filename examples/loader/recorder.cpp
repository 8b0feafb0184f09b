#include "recorder.hpp"

#include <bpf/libbpf.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <thread>
#include <span>
#include <vector>

#include "error.hpp"
#include "microsentinel/btf_layout.hpp"
#include "microsentinel/capture.hpp"
#include "pinned.hpp"
#include "preflight.hpp"

namespace microsentinel::loader {

namespace {

using clock = std::chrono::steady_clock;

constexpr auto poll_timeout = std::chrono::milliseconds(100);
constexpr auto replacement_check_interval = std::chrono::milliseconds(200);
constexpr auto counters_interval = std::chrono::seconds(1);
// A replaced collector's ring is drained until it stayed empty this long: its
// links go away when its pins are removed, a few milliseconds after the swap.
constexpr auto retired_idle_limit = std::chrono::seconds(1);

struct ring_deleter {
    void operator()(ring_buffer* rb) const noexcept { ring_buffer__free(rb); }
};

class recorder;

// One pinned collector generation: its ring, and the layout its program's BTF gave.
struct source {
    recorder* owner = nullptr;
    unsigned generation = 0;
    negotiated_layout layout;
    pinned_collector pins;
    std::unique_ptr<ring_buffer, ring_deleter> ring;
    clock::time_point last_record;
};

class recorder {
public:
    explicit recorder(std::FILE* out) : writer_(out) {}

    // Each record is written under the layout of the ring it came from.
    int on_record(const source& from, const void* data, std::size_t size)
    {
        if (from.generation != written_generation_) {
            writer_.write_layout(from.layout);
            written_generation_ = from.generation;
            ++result_.layout_changes;
        }
        writer_.write_sample(std::span(static_cast<const std::byte*>(data), size));
        ++result_.samples;
        return 0;
    }

    capture_writer& writer() noexcept { return writer_; }
    record_result& result() noexcept { return result_; }
    void header_written(unsigned generation) noexcept { written_generation_ = generation; }

private:
    capture_writer writer_;
    unsigned written_generation_ = 0;
    record_result result_;
};

int ring_callback(void* ctx, void* data, size_t size)
{
    auto* s = static_cast<source*>(ctx);
    s->last_record = clock::now();
    return s->owner->on_record(*s, data, size);
}

std::unique_ptr<source> open_source(recorder& rec, pinned_collector pins, unsigned generation)
{
    auto s = std::make_unique<source>();
    s->owner = &rec;
    s->generation = generation;
    try {
        s->layout = negotiate_from_prog_fd(pins.sample_prog.get());
    } catch (const layout_error& e) {
        throw loader_error(std::string("the pinned collector has an unknown sample layout: ") + e.what(),
                           "load a collector built from this release's bpf/ (micro_sentinel_loader --object ...)");
    }
    s->pins = std::move(pins);
    s->last_record = clock::now();
    s->ring.reset(ring_buffer__new(s->pins.samples.get(), ring_callback, s.get(), nullptr));
    if (!s->ring)
        throw loader_error("cannot open the collector's ring buffer: " + errno_text(errno),
                           "run as root (reading pinned maps needs CAP_BPF)");
    return s;
}

std::int64_t boot_to_wall_ns()
{
    timespec mono{}, wall{};
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    return (std::int64_t(wall.tv_sec) - mono.tv_sec) * 1'000'000'000LL + (wall.tv_nsec - mono.tv_nsec);
}

std::string host_name()
{
    char buf[256] = {};
    gethostname(buf, sizeof buf - 1);
    return buf;
}

void consume(source& s)
{
    if (int err = ring_buffer__consume(s.ring.get()); err < 0)
        throw loader_error("reading the ring buffer failed: " + errno_text(err), "record again");
}

} // namespace

record_result record_pinned(const std::string& pin_dir, std::FILE* out, double duration_s,
                            const volatile std::sig_atomic_t* stop)
{
    require_bpf_capabilities(false);
    // A replacement in progress hides the pins for a moment; wait that out.
    auto pins = open_pinned(pin_dir);
    for (auto give_up = clock::now() + std::chrono::seconds(1); !pins && clock::now() < give_up;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        pins = open_pinned(pin_dir);
    }
    if (!pins)
        throw loader_error("no collector is pinned at " + pin_dir,
                           "load one first (micro_sentinel_loader, or systemctl start micro-sentinel-bpf)");

    recorder rec(out);
    unsigned generation = 1;
    auto current = open_source(rec, std::move(*pins), generation);
    rec.writer().write_header({boot_to_wall_ns(), host_name(), current->layout});
    rec.header_written(generation);
    rec.writer().flush();

    std::vector<std::unique_ptr<source>> retired;
    const auto start = clock::now();
    const auto end = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(duration_s));
    auto next_check = start + replacement_check_interval;
    auto next_counters = start + counters_interval;

    while (!*stop && (duration_s == 0 || clock::now() < end)) {
        int err = ring_buffer__poll(current->ring.get(), int(poll_timeout.count()));
        if (err < 0 && err != -EINTR)
            throw loader_error("polling the ring buffer failed: " + errno_text(err), "record again");
        // The collector wakes its consumer only once a batch is waiting; what
        // came in below that is read here, at most a poll timeout late.
        consume(*current);
        for (auto it = retired.begin(); it != retired.end();) {
            consume(**it);
            if (clock::now() - (*it)->last_record > retired_idle_limit)
                it = retired.erase(it);
            else
                ++it;
        }
        const auto now = clock::now();
        if (now >= next_check) {
            next_check = now + replacement_check_interval;
            std::uint32_t id = pinned_prog_id(pin_dir);
            if (id != 0 && id != current->pins.prog_id) {
                if (auto fresh = open_pinned(pin_dir)) {
                    consume(*current);
                    current->last_record = now;
                    retired.push_back(std::move(current));
                    current = open_source(rec, std::move(*fresh), ++generation);
                }
            }
        }
        if (now >= next_counters) {
            next_counters = now + counters_interval;
            rec.writer().write_counters(read_counters(current->pins.counters.get()));
        }
        rec.writer().flush();
    }
    // What is left in the rings goes out too: readers read to the end of the
    // stream (the agent does, after a stop), so nothing taken is lost.
    for (auto& s : retired)
        consume(*s);
    consume(*current);
    rec.writer().write_counters(read_counters(current->pins.counters.get()));
    rec.writer().flush();
    return rec.result();
}

} // namespace microsentinel::loader
