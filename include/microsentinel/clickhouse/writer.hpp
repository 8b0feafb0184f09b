#pragma once
// The ClickHouse writer: raw samples, flow rollup rows and data objects into
// ms_raw_samples, ms_flow_rollup and ms_data_objects over HTTP, in RowBinary
// batches bounded by rows, bytes and time.
//
// - Schema: reads system.columns before the first batch of a table and maps
//   its fields onto what exists (schema.hpp); re-reads after a schema error
//   and every schema_refresh, so a migration applied while it runs is seen.
// - Nothing lost: a batch that fails (down, 5xx, timeout) goes to the on-disk
//   spool (spool.hpp) and is retried in order with exponential backoff and
//   jitter, also after a restart. A full spool blocks the caller
//   (backpressure). Rows the server rejects as invalid go to quarantine.
//   Rows that cannot be written at all (their table does not exist) are
//   counted in stats().dropped_rows and reported.
// - Duplicates: each batch has a token derived from its contents, sent as
//   insert_deduplication_token where the server has that setting. A retried
//   batch is byte-identical, so Replicated*MergeTree block deduplication (any
//   version) and ReplacingMergeTree also collapse a retry after an ambiguous
//   failure.
// - Several URLs: batches go round-robin; a failing endpoint fails over to
//   the next one.
//
// Single-threaded: the caller's thread serializes and sends. Call poll()
// regularly (time-based flush, spool retries).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../detail/hash.hpp"
#include "../rows.hpp"
#include "../sample.hpp"
#include "http.hpp"
#include "rowbinary.hpp"
#include "schema.hpp"
#include "spool.hpp"
#include "tables.hpp"

namespace microsentinel::clickhouse {

struct writer_options {
    std::vector<std::string> urls;  // at least one; round-robin with failover
    client_options client;          // credentials, TLS, timeouts, compression, database
    std::size_t batch_rows = 65536; // a batch closes at whichever limit comes first
    std::size_t batch_bytes = 8u << 20;
    std::chrono::milliseconds flush_interval{1000};
    std::filesystem::path spool_dir = "/var/spool/micro-sentinel/clickhouse";
    std::uint64_t spool_max_bytes = 1ull << 30;
    std::chrono::milliseconds backoff_initial{250};
    std::chrono::milliseconds backoff_max{30000};
    std::chrono::milliseconds schema_refresh{60000}; // 0: only after a schema error
    std::string host;               // the host column of every row
    std::int64_t boot_to_wall_ns = 0;
    // Warnings and errors, one line each (not called per row). Default: stderr.
    std::function<void(std::string_view)> log;
    // Polled while the caller is blocked on a full spool; true gives up the
    // batch waiting for space (its rows are counted as dropped). Default: never.
    std::function<bool()> interrupted;
};

struct writer_stats {
    std::uint64_t rows_sent[3] = {};     // per table: raw samples, rollup, data objects
    std::uint64_t batches_sent = 0;
    std::uint64_t batches_spooled = 0;   // batches that went to disk after a failure
    std::uint64_t batches_replayed = 0;  // spooled batches delivered later
    std::uint64_t failed_attempts = 0;   // requests that failed (each retry counts)
    std::uint64_t failovers = 0;         // a request moved on to the next URL
    std::uint64_t schema_reads = 0;
    std::uint64_t reencoded_batches = 0; // spooled batches rewritten for a changed schema
    std::uint64_t quarantined_batches = 0;
    std::uint64_t quarantined_rows = 0;
    std::uint64_t dropped_rows = 0;      // rows of a table the server does not have
    std::uint64_t corrupt_spool_files = 0;
    std::uint64_t backpressure_waits = 0; // times the caller was blocked on a full spool
};

class writer_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class table_index : std::size_t { raw_samples = 0, flow_rollup = 1, data_objects = 2 };

class writer {
public:
    explicit writer(writer_options options)
        : options_(std::move(options)), spool_(validated(options_).spool_dir, options_.spool_max_bytes),
          rng_(std::random_device{}())
    {
        if (!options_.log)
            options_.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };
        for (const auto& url : options_.urls)
            endpoints_.push_back({std::make_unique<client>(url, options_.client)});
        tables_[0].spec = &raw_samples_table;
        tables_[0].native = raw_sample_native_types;
        tables_[1].spec = &flow_rollup_table;
        tables_[1].native = flow_rollup_native_types;
        tables_[2].spec = &data_objects_table;
        tables_[2].native = data_object_native_types;
        for (auto& t : tables_)
            t.buffer.reserve(std::min<std::size_t>(options_.batch_bytes + 4096, 64u << 20));
        raw_ctx_ = {options_.host, options_.boot_to_wall_ns};
        if (!spool_.empty())
            warn("replaying " + std::to_string(spool_.size()) + " spooled batches (" + std::to_string(spool_.bytes()) +
                 " bytes) from " + spool_.dir().string());
    }

    // Rows still in open batches go to the spool (no network): a writer
    // destroyed without drain() loses nothing; the next one sends them.
    ~writer()
    {
        for (auto& t : tables_) {
            if (t.rows == 0)
                continue;
            batch b = take_batch(t);
            try {
                if (spool_.fits(b))
                    spool_.push(b);
                else
                    options_.log("writer closed with a full spool: " + std::to_string(b.rows) + " rows of " + b.table + " dropped");
            } catch (const std::exception& e) {
                options_.log(std::string("writer closed: cannot spool ") + std::to_string(b.rows) + " rows of " + b.table + ": " + e.what());
            }
        }
    }

    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;

    // Rows ---------------------------------------------------------------

    // data_object_id: the registry's id for s.data_addr, 0 for none.
    void add(const sample& s, std::uint64_t data_object_id = 0)
    {
        table_state& t = open(table_index::raw_samples);
        if (t.missing) {
            ++stats_.dropped_rows;
            return;
        }
        encode_raw_sample(t.buffer, t.plan, s, data_object_id, raw_ctx_);
        row_added(t);
    }

    void add(std::span<const flow_rollup_row> rows)
    {
        table_state& t = open(table_index::flow_rollup);
        for (const auto& r : rows) {
            if (t.missing) {
                ++stats_.dropped_rows;
                continue;
            }
            encode_flow_rollup(t.buffer, t.plan, r, options_.host);
            row_added(t);
        }
    }

    void add(const data_object_row& r)
    {
        table_state& t = open(table_index::data_objects);
        if (t.missing) {
            ++stats_.dropped_rows;
            return;
        }
        encode_data_object(t.buffer, t.plan, r);
        row_added(t);
    }

    // Time ---------------------------------------------------------------

    // Closes batches older than flush_interval and retries the spool when its
    // backoff has passed. Cheap when there is nothing to do.
    void poll()
    {
        auto now = clock::now();
        for (std::size_t i = 0; i < tables_.size(); ++i)
            if (tables_[i].rows > 0 && now - tables_[i].opened >= options_.flush_interval)
                close_batch(tables_[i]);
        if (!spool_.empty() && now >= next_attempt_)
            drain_spool();
    }

    // Closes every open batch and tries to deliver them (failures are spooled).
    void flush()
    {
        for (auto& t : tables_)
            if (t.rows > 0)
                close_batch(t);
        if (!spool_.empty() && clock::now() >= next_attempt_)
            drain_spool();
    }

    // Retries the spool, waiting out the backoff, until it is empty or `limit`
    // passes. True when everything was delivered.
    bool drain(std::chrono::milliseconds limit)
    {
        flush();
        auto deadline = clock::now() + limit;
        while (!spool_.empty()) {
            auto now = clock::now();
            if (now >= deadline || (options_.interrupted && options_.interrupted()))
                return false;
            if (now < next_attempt_)
                std::this_thread::sleep_for(std::min<clock::duration>({next_attempt_ - now, deadline - now, std::chrono::milliseconds(200)}));
            else
                drain_spool();
        }
        return true;
    }

    const writer_stats& stats() const noexcept { return stats_; }
    const spool& pending() const noexcept { return spool_; }
    const std::string& last_error() const noexcept { return last_error_; }
    // The column plan in use for a table (after the first row of that table).
    const column_plan& plan(table_index t) const noexcept { return tables_[std::size_t(t)].plan; }

private:
    using clock = std::chrono::steady_clock;

    struct endpoint {
        std::unique_ptr<client> http;
        int token_support = -1; // -1 unknown, 0 no, 1 yes (insert_deduplication_token)
    };

    struct table_state {
        const table_spec* spec = nullptr;
        std::span<const column_type> native;
        column_plan plan;
        server_table server;
        bool planned = false;
        bool replan = false;       // the schema was re-read while a batch was open
        bool server_known = false; // `server` was read; until then the plan is the native one
        bool missing = false;      // the server answered: no such table
        bool warned = false;
        clock::time_point planned_at;
        rowbinary_buffer buffer;
        std::size_t rows = 0;
        clock::time_point opened;
    };

    static const writer_options& validated(const writer_options& o)
    {
        if (o.urls.empty())
            throw writer_error("no ClickHouse URL given; pass --clickhouse-url http://host:8123/");
        if (o.batch_rows == 0 || o.batch_bytes == 0)
            throw writer_error("batch limits must be positive (--batch-rows, --batch-bytes)");
        if (o.spool_max_bytes < 2 * o.batch_bytes + (1u << 20))
            throw writer_error("--spool-max-bytes (" + std::to_string(o.spool_max_bytes) +
                               ") must hold at least two batches: raise it above 2 x --batch-bytes + 1 MiB");
        return o;
    }

    // A line already logged since the last delivery is not logged again: a
    // server that stays down is reported once, not once per retry.
    void warn(const std::string& line)
    {
        last_error_ = line;
        if (std::find(logged_.begin(), logged_.end(), line) != logged_.end())
            return;
        if (logged_.size() < 32)
            logged_.push_back(line);
        options_.log(line);
    }

    table_state& open(table_index i)
    {
        table_state& t = tables_[std::size_t(i)];
        if (t.rows == 0) {
            auto now = clock::now();
            bool refresh_due = options_.schema_refresh.count() > 0 && now - t.planned_at >= options_.schema_refresh;
            if (!t.planned || t.replan || refresh_due || (!t.server_known && now >= next_attempt_))
                plan_table(t);
        }
        return t;
    }

    void row_added(table_state& t)
    {
        if (++t.rows == 1)
            t.opened = clock::now();
        if (t.rows >= options_.batch_rows || t.buffer.size() >= options_.batch_bytes)
            close_batch(t);
    }

    // Schema -------------------------------------------------------------

    // Reads the table's columns from the first endpoint that answers. False
    // when none answered (the caller keeps or takes the native plan).
    bool read_schema(table_state& t)
    {
        std::string sql = "SELECT name, type, default_kind FROM system.columns WHERE database = currentDatabase() AND table = '" +
                          std::string(t.spec->table) + "' FORMAT TabSeparated";
        for (std::size_t n = 0; n < endpoints_.size(); ++n) {
            endpoint& e = endpoints_[(next_endpoint_ + n) % endpoints_.size()];
            try {
                t.server = parse_system_columns(e.http->execute(sql));
                ++stats_.schema_reads;
                probe_token_support(e);
                return true;
            } catch (const std::exception& ex) {
                warn(std::string("cannot read the schema of ") + std::string(t.spec->table) + ": " + ex.what());
            }
        }
        return false;
    }

    // Whether the endpoint knows insert_deduplication_token (ClickHouse 22.2+;
    // an unknown setting would fail the insert). Asked once per endpoint.
    static void probe_token_support(endpoint& e)
    {
        if (e.token_support >= 0)
            return;
        e.token_support =
            e.http->execute("SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'").starts_with("1") ? 1 : 0;
    }

    // Re-reads the server's columns; the plan changes only between batches
    // (an open batch keeps the plan its rows were encoded with).
    void plan_table(table_state& t)
    {
        t.planned_at = clock::now();
        if (read_schema(t))
            t.server_known = true;
        if (t.rows > 0) {
            t.replan = true;
            return;
        }
        t.replan = false;
        if (!t.server_known) {
            if (!t.planned)
                t.plan = native_plan(*t.spec, t.native);
            t.planned = true;
            return;
        }
        bool was_missing = t.missing;
        t.missing = t.server.empty();
        column_plan plan = map_columns(*t.spec, t.server);
        bool changed = !t.planned || plan.typed_column_list() != t.plan.typed_column_list() || was_missing != t.missing;
        t.plan = std::move(plan);
        t.planned = true;
        if (!changed)
            return;
        if (t.missing) {
            warn("table " + std::string(t.spec->table) + " does not exist on the server; its rows are dropped and counted until it does: run " +
                 std::string(t.spec->migration) + " (micro_sentinel_migrate)");
            return;
        }
        if (t.plan.dropped.empty()) {
            t.warned = false;
            return;
        }
        if (t.warned)
            return;
        std::string fields;
        for (auto f : t.plan.dropped)
            fields += (fields.empty() ? "" : ", ") + std::string(f);
        std::string line = "table " + std::string(t.spec->table) + " lacks column(s) " + fields +
                           "; writing without them. Run " + std::string(t.spec->migration) + " to store them";
        for (const auto& u : t.plan.unsupported)
            line += "; column type not supported by the writer: " + u;
        warn(line);
        t.warned = true;
    }

    table_state* table_named(std::string_view name)
    {
        for (auto& t : tables_)
            if (t.spec->table == name)
                return &t;
        return nullptr;
    }

    // Batches ------------------------------------------------------------

    // Same table, columns and rows: same token (a word-at-a-time hash, cheap
    // next to serialization).
    static std::string content_token(const batch& b)
    {
        std::uint64_t h = microsentinel::detail::stable_hasher().add(b.table).add(b.columns).add(b.payload).finish();
        char hex[48];
        std::snprintf(hex, sizeof hex, "ms-%016llx-%llu", static_cast<unsigned long long>(h), static_cast<unsigned long long>(b.rows));
        return hex;
    }

    void close_batch(table_state& t) { deliver(take_batch(t)); }

    batch take_batch(table_state& t)
    {
        batch b;
        b.sequence = spool_.take_sequence();
        b.table = std::string(t.spec->table);
        b.columns = t.plan.typed_column_list();
        b.rows = t.rows;
        b.payload = t.buffer.take();
        b.token = content_token(b);
        t.buffer.reserve(std::min<std::size_t>(options_.batch_bytes + 4096, 64u << 20));
        t.rows = 0;
        return b;
    }

    // Sends a new batch, or spools it behind older ones to keep the order.
    void deliver(batch b)
    {
        if (spool_.empty() && clock::now() >= next_attempt_) {
            switch (send(b)) {
            case outcome::delivered:
                return;
            case outcome::quarantined:
                return;
            case outcome::failed:
                break;
            }
        }
        if (spool_push(b))
            ++stats_.batches_spooled;
        if (clock::now() >= next_attempt_)
            drain_spool();
    }

    // Blocks while the spool is full: the caller (the input) waits.
    // False only when interrupted while waiting (writer_options::interrupted).
    bool spool_push(const batch& b)
    {
        if (!spool_.fits(b)) {
            ++stats_.backpressure_waits;
            warn("spool " + spool_.dir().string() + " is full (" + std::to_string(spool_.bytes()) + " of " +
                 std::to_string(spool_.max_bytes()) + " bytes): input blocked until ClickHouse accepts batches. Last error: " +
                 last_error_);
            while (!spool_.fits(b)) {
                if (options_.interrupted && options_.interrupted()) {
                    stats_.dropped_rows += b.rows;
                    warn("interrupted while the spool was full: " + std::to_string(b.rows) + " rows of " + b.table +
                         " dropped (counted in dropped_rows)");
                    return false;
                }
                auto now = clock::now();
                if (now < next_attempt_)
                    std::this_thread::sleep_for(std::min<clock::duration>(next_attempt_ - now, std::chrono::milliseconds(200)));
                else
                    drain_spool();
            }
        }
        spool_.push(b);
        return true;
    }

    void drain_spool()
    {
        while (!spool_.empty() && clock::now() >= next_attempt_) {
            auto b = spool_.front();
            stats_.corrupt_spool_files = spool_.corrupt();
            if (!b)
                break;
            outcome o = send(*b);
            if (o == outcome::failed)
                return;
            if (o == outcome::delivered)
                ++stats_.batches_replayed;
            spool_.pop(b->sequence);
        }
        stats_.corrupt_spool_files = spool_.corrupt();
    }

    enum class outcome { delivered, quarantined, failed };

    // Invalid-data errors that 18.16 answers with HTTP 500: retrying cannot help.
    static bool invalid_data(int code) noexcept
    {
        static constexpr int codes[] = {6, 26, 27, 32, 33, 38, 41, 53, 62, 69, 70, 72, 117, 131, 190};
        for (int c : codes)
            if (c == code)
                return true;
        return false;
    }

    // Re-encodes `b` for the table's current server columns when it was
    // written for other ones. False when the table no longer exists.
    bool fit_to_schema(batch& b, table_state& t)
    {
        auto source = parse_typed_column_list(b.columns);
        if (!source)
            return true; // not ours to judge; let the server answer
        bool same = true;
        for (const auto& [name, type] : *source) {
            bool found = false;
            for (const auto& c : t.server)
                if (c.name == name && parse_column_type(c.type) == type && c.default_kind != "MATERIALIZED" && c.default_kind != "ALIAS")
                    found = true;
            same = same && found;
        }
        if (same)
            return true;
        if (t.server.empty())
            return false;
        std::vector<std::optional<column_type>> target;
        std::string columns;
        for (const auto& [name, type] : *source) {
            std::optional<column_type> to;
            for (const auto& c : t.server)
                if (c.name == name && c.default_kind != "MATERIALIZED" && c.default_kind != "ALIAS")
                    to = parse_column_type(c.type);
            target.push_back(to);
            if (to)
                columns += (columns.empty() ? "" : ",") + name + ' ' + to_string(*to);
        }
        rowbinary_reader in(b.payload);
        rowbinary_buffer out;
        out.reserve(b.payload.size());
        for (std::uint64_t row = 0; row < b.rows; ++row)
            for (std::size_t c = 0; c < source->size(); ++c) {
                cell v;
                if (!in.read_cell((*source)[c].second, v))
                    return true; // malformed: the server will say so, and it goes to quarantine
                if (target[c])
                    out.put_cell(*target[c], v);
            }
        b.columns = columns;
        b.payload = out.take();
        b.token = content_token(b);
        ++stats_.reencoded_batches;
        return true;
    }

    static std::string insert_query(const batch& b)
    {
        std::string list = "(";
        if (auto cols = parse_typed_column_list(b.columns)) {
            for (std::size_t i = 0; i < cols->size(); ++i)
                list += (i ? "," : "") + column_plan::quote_identifier((*cols)[i].first);
        }
        return "INSERT INTO " + column_plan::quote_identifier(b.table) + " " + list + ") FORMAT RowBinary";
    }

    // One delivery attempt over the endpoints (failover), with one schema
    // re-read if the server reports a schema error.
    outcome send(batch& b)
    {
        table_state* t = table_named(b.table);
        bool schema_retried = false;
        if (t && !t->server_known)
            plan_table(*t);
        if (t && t->server_known && !fit_to_schema(b, *t))
            return drop(b, "table " + b.table + " no longer exists on the server");
        for (std::size_t n = 0; n < endpoints_.size(); ++n) {
            endpoint& e = endpoints_[next_endpoint_];
            next_endpoint_ = (next_endpoint_ + 1) % endpoints_.size();
            try {
                probe_token_support(e);
                settings params;
                if (e.token_support == 1)
                    params.emplace_back("insert_deduplication_token", b.token);
                response r = e.http->post(insert_query(b), b.payload, params);
                if (r.ok()) {
                    ++stats_.batches_sent;
                    logged_.clear();
                    if (t)
                        stats_.rows_sent[std::size_t(t - tables_.data())] += b.rows;
                    backoff_step_ = 0;
                    return outcome::delivered;
                }
                ++stats_.failed_attempts;
                failure f = classify(r);
                if (f == failure::retryable && invalid_data(r.exception_code))
                    f = failure::rejected;
                server_error err = e.http->error_for(r);
                if (f == failure::rejected) {
                    auto path = spool_.quarantined().put(b, err.what());
                    ++stats_.quarantined_batches;
                    stats_.quarantined_rows += b.rows;
                    warn("ClickHouse rejected " + std::to_string(b.rows) + " rows of " + b.table + " (" + err.what() +
                         "); kept in " + path.string());
                    return outcome::quarantined;
                }
                if (f == failure::schema && t && !schema_retried) {
                    schema_retried = true;
                    warn(std::string(err.what()) + "; re-reading the schema of " + b.table);
                    plan_table(*t);
                    if (t->server_known && !fit_to_schema(b, *t))
                        return drop(b, "table " + b.table + " does not exist on the server");
                    --n; // same number of endpoints still to try
                    continue;
                }
                warn(err.what());
            } catch (const transport_error& ex) {
                ++stats_.failed_attempts;
                warn(ex.what());
            } catch (const server_error& ex) { // the probe of the endpoint's settings failed
                ++stats_.failed_attempts;
                warn(ex.what());
            }
            if (endpoints_.size() > 1 && n + 1 < endpoints_.size())
                ++stats_.failovers;
        }
        schedule_retry();
        return outcome::failed;
    }

    outcome drop(const batch& b, const std::string& why)
    {
        stats_.dropped_rows += b.rows;
        warn(why + ": " + std::to_string(b.rows) + " rows dropped (counted in dropped_rows); run " +
             std::string(direction_migration) + " (micro_sentinel_migrate)");
        return outcome::quarantined;
    }

    void schedule_retry()
    {
        auto base = options_.backoff_initial * (1ll << std::min(backoff_step_, 20));
        if (base > options_.backoff_max)
            base = options_.backoff_max;
        // Full jitter on the upper half: spread writers that failed together.
        std::uniform_real_distribution<double> jitter(0.5, 1.0);
        next_attempt_ = clock::now() + std::chrono::milliseconds(std::int64_t(double(base.count()) * jitter(rng_)));
        ++backoff_step_;
    }

    writer_options options_;
    spool spool_;
    std::vector<endpoint> endpoints_;
    std::size_t next_endpoint_ = 0;
    std::array<table_state, 3> tables_;
    raw_sample_context raw_ctx_;
    writer_stats stats_;
    std::string last_error_;
    std::vector<std::string> logged_; // lines logged since the last delivery
    clock::time_point next_attempt_{};
    int backoff_step_ = 0;
    std::mt19937_64 rng_;
};

} // namespace microsentinel::clickhouse
