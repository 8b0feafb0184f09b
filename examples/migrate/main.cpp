// micro_sentinel_migrate: applies MicroSentinel's ClickHouse migrations over
// HTTP, in file order, each file once, and shows the resulting tables.
#include <microsentinel/clickhouse/http.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "migrations.hpp"

namespace ch = microsentinel::clickhouse;
namespace mg = microsentinel::migrate;

namespace {

constexpr const char* described_tables[] = {"ms_raw_samples", "ms_flow_rollup", "ms_data_objects"};

struct options {
    std::string url = "http://127.0.0.1:8123/";
    std::string migrations_dir; // empty: installed or source migrations
    std::string cluster;
    std::string database;
    std::string user;
    std::string password_file;
    ch::tls_options tls;
    int timeout_s = 300;
    bool dry_run = false;
};

void print_usage(std::FILE* out)
{
    std::fprintf(out,
                 "usage: micro_sentinel_migrate [options]\n"
                 "Applies the pending MicroSentinel ClickHouse migrations (*.sql, in file-name order)\n"
                 "over HTTP, records each applied file in the table %s, and prints\n"
                 "DESCRIBE TABLE for ms_raw_samples, ms_flow_rollup and ms_data_objects. Needs ClickHouse %d+.\n"
                 "\n"
                 "  --clickhouse-url URL   server to migrate (default http://127.0.0.1:8123/)\n"
                 "  --migrations DIR       migration files (default: the installed ones, else the source tree's;\n"
                 "                         with --cluster, their cluster/ subdirectory)\n"
                 "  --cluster NAME         run every DDL statement ON CLUSTER NAME (the cluster files' '{cluster}'\n"
                 "                         becomes NAME; other DDL gets ON CLUSTER added)\n"
                 "  --database DB          database of the tables (default: the user's default)\n"
                 "  --dry-run              print the plan and the statements; change nothing\n"
                 "  --user NAME            ClickHouse user (default $CLICKHOUSE_USER, else default)\n"
                 "  --password-file PATH   file whose first line is the password (default $CLICKHOUSE_PASSWORD_FILE,\n"
                 "                         else $CLICKHOUSE_PASSWORD); there is no password option on purpose\n"
                 "  --ca-file PATH         CA bundle for https URLs\n"
                 "  --cert PATH, --key PATH  client certificate and key for mutual TLS\n"
                 "  --insecure             do not verify the server's certificate\n"
                 "  --timeout SECONDS      per statement (default 300)\n"
                 "  --help                 this text\n"
                 "\n"
                 "Exit status: 0 done (or nothing to do), 1 a migration or the server failed, 2 bad usage.\n",
                 mg::bookkeeping_table, mg::minimum_major_version);
}

[[noreturn]] void usage_error(const std::string& message)
{
    std::fprintf(stderr, "micro_sentinel_migrate: %s (see --help)\n", message.c_str());
    std::exit(2);
}

options parse(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                usage_error(std::string(arg) + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            print_usage(stdout);
            std::exit(0);
        } else if (arg == "--clickhouse-url") {
            o.url = value();
        } else if (arg == "--migrations") {
            o.migrations_dir = value();
        } else if (arg == "--cluster") {
            o.cluster = value();
            if (!mg::valid_cluster_name(o.cluster))
                usage_error("cluster name '" + o.cluster + "' is not a plain name (letters, digits, _ - .)");
        } else if (arg == "--database") {
            o.database = value();
        } else if (arg == "--dry-run") {
            o.dry_run = true;
        } else if (arg == "--user") {
            o.user = value();
        } else if (arg == "--password-file") {
            o.password_file = value();
        } else if (arg == "--ca-file") {
            o.tls.ca_file = value();
        } else if (arg == "--cert") {
            o.tls.cert_file = value();
        } else if (arg == "--key") {
            o.tls.key_file = value();
        } else if (arg == "--insecure") {
            o.tls.verify = false;
        } else if (arg == "--timeout") {
            o.timeout_s = std::atoi(value().c_str());
            if (o.timeout_s <= 0)
                usage_error("--timeout needs a positive number of seconds");
        } else {
            usage_error("unknown option " + std::string(arg));
        }
    }
    return o;
}

// The installed migrations (<prefix>/share/microsentinel/migrations beside
// <prefix>/bin) when this binary is installed, else the source tree's.
std::filesystem::path default_migrations_dir(const std::string& cluster)
{
    std::filesystem::path dir = MICROSENTINEL_SOURCE_MIGRATIONS;
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto installed = exe.parent_path().parent_path() / "share" / "microsentinel" / "migrations";
        if (std::filesystem::is_directory(installed, ec))
            dir = installed;
    }
    return cluster.empty() ? dir : dir / "cluster";
}

void print_plan(const std::vector<mg::migration>& all, const std::map<std::string, std::string>& applied,
                bool with_statements)
{
    for (const auto& m : all) {
        auto it = applied.find(m.name);
        if (it == applied.end()) {
            std::printf("  pending  %s (%zu statements)\n", m.name.c_str(), m.statements.size());
        } else {
            std::printf("  applied  %s\n", m.name.c_str());
            if (it->second != m.checksum)
                std::fprintf(stderr,
                             "warning: %s changed since it was applied; applied migrations are never edited: "
                             "put the change in a new file\n",
                             m.name.c_str());
        }
    }
    if (!with_statements)
        return;
    for (const auto& m : all) {
        if (applied.count(m.name))
            continue;
        for (std::size_t i = 0; i < m.statements.size(); ++i)
            std::printf("\n-- %s, statement %zu of %zu\n%s;\n", m.name.c_str(), i + 1, m.statements.size(),
                        m.statements[i].c_str());
    }
}

int run(const options& o)
{
    std::filesystem::path dir =
        o.migrations_dir.empty() ? default_migrations_dir(o.cluster) : std::filesystem::path(o.migrations_dir);
    std::vector<mg::migration> all = mg::load_migrations(dir, o.cluster);

    ch::client_options co;
    co.auth = ch::load_credentials(o.user, o.password_file);
    co.tls = o.tls;
    co.database = o.database;
    co.timeout = std::chrono::seconds(o.timeout_s);
    ch::client c(o.url, co);

    std::string version;
    std::map<std::string, std::string> applied;
    try {
        version = c.execute("SELECT version()");
        while (!version.empty() && version.back() == '\n')
            version.pop_back();
        if (mg::major_version(version) < mg::minimum_major_version) {
            std::string message = "ClickHouse " + version + " at " + c.redacted_url() + " is too old: the migrations need " +
                                  "ClickHouse " + std::to_string(mg::minimum_major_version) +
                                  " or later (DateTime64, CODEC, ADD COLUMN IF NOT EXISTS); upgrade the server";
            if (!o.dry_run) {
                std::fprintf(stderr, "micro_sentinel_migrate: %s\n", message.c_str());
                return 1;
            }
            std::fprintf(stderr, "warning: %s\n", message.c_str());
        } else {
            applied = mg::applied_migrations(c);
        }
    } catch (const ch::transport_error& e) {
        if (!o.dry_run)
            throw;
        std::fprintf(stderr, "warning: %s; planning as if nothing were applied\n", e.what());
        version = "unknown";
    }

    std::size_t pending = 0;
    for (const auto& m : all)
        pending += applied.count(m.name) ? 0 : 1;
    std::printf("ClickHouse %s at %s%s: %zu migrations in %s, %zu applied, %zu pending\n", version.c_str(),
                c.redacted_url().c_str(), o.cluster.empty() ? "" : (" (cluster " + o.cluster + ")").c_str(),
                all.size(), dir.c_str(), all.size() - pending, pending);
    print_plan(all, applied, o.dry_run);
    if (o.dry_run) {
        std::printf("\ndry run: nothing was changed\n");
        return 0;
    }

    c.execute(mg::bookkeeping_ddl(o.cluster));
    for (const auto& m : all) {
        if (applied.count(m.name))
            continue;
        for (std::size_t i = 0; i < m.statements.size(); ++i) {
            ch::response r = c.post(m.statements[i]);
            if (!r.ok()) {
                std::string why = ch::classify(r) == ch::failure::auth
                                      ? c.error_for(r).what()
                                      : r.message() + " (HTTP " + std::to_string(r.status) + ")";
                std::fprintf(stderr,
                             "micro_sentinel_migrate: %s, statement %zu of %zu failed: %s\n"
                             "  the statements are idempotent: fix the cause and run again\n",
                             m.name.c_str(), i + 1, m.statements.size(), why.c_str());
                return 1;
            }
        }
        mg::record_applied(c, m);
        std::printf("applied %s (%zu statements)\n", m.name.c_str(), m.statements.size());
    }
    if (pending == 0)
        std::printf("nothing to apply: the schema is current\n");

    for (const char* table : described_tables) {
        std::printf("\nDESCRIBE TABLE %s\n", table);
        ch::response r = c.post(std::string("DESCRIBE TABLE ") + table + " FORMAT PrettyCompactNoEscapes");
        if (r.ok())
            std::fputs(r.body.c_str(), stdout);
        else
            std::printf("  (%s)\n", r.message().c_str());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    options o = parse(argc, argv);
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "micro_sentinel_migrate: %s\n", e.what());
        return 1;
    }
}
