#pragma once
// A small ClickHouse HTTP client on libcurl: one keep-alive connection per
// client, optional gzip request bodies, timeouts, TLS, credentials that never
// need the command line. Not thread-safe: one client per thread.
//
// Link MicroSentinel::clickhouse (libcurl) and zlib.
#include <curl/curl.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace microsentinel::clickhouse {

// Bad settings given to the client: an unreadable password file, a password in the URL.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct credentials {
    std::string user = "default";
    std::string password;
};

// First line of `path`, without its line ending.
inline std::string read_password_file(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        throw config_error("cannot read the ClickHouse password file " + path + "; check its path and permissions");
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r')
        line.pop_back();
    return line;
}

// The user is `user` if given, else $CLICKHOUSE_USER, else "default". The
// password comes from `password_file` if given, else the file named by
// $CLICKHOUSE_PASSWORD_FILE, else $CLICKHOUSE_PASSWORD, else is empty.
inline credentials load_credentials(const std::string& user = {}, const std::string& password_file = {})
{
    credentials c;
    if (!user.empty())
        c.user = user;
    else if (const char* env = std::getenv("CLICKHOUSE_USER"); env && *env)
        c.user = env;
    if (!password_file.empty())
        c.password = read_password_file(password_file);
    else if (const char* file = std::getenv("CLICKHOUSE_PASSWORD_FILE"); file && *file)
        c.password = read_password_file(file);
    else if (const char* env = std::getenv("CLICKHOUSE_PASSWORD"))
        c.password = env;
    return c;
}

struct tls_options {
    std::string ca_file;   // CA bundle for the server certificate; empty: the system's
    std::string cert_file; // client certificate for mutual TLS
    std::string key_file;
    bool verify = true;    // verify the server's certificate and host name
};

struct client_options {
    credentials auth;
    tls_options tls;
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
    std::chrono::milliseconds timeout{std::chrono::seconds(60)}; // whole request, 0 = none
    bool compress = false;  // gzip request bodies (Content-Encoding: gzip)
    std::string database;   // empty: the user's default database
};

// A ClickHouse setting or parameter sent in the URL (insert_deduplication_token, ...).
using settings = std::vector<std::pair<std::string, std::string>>;

struct response {
    long status = 0;
    std::string body;
    int exception_code = 0; // ClickHouse error code; 0 when the server reported none

    bool ok() const noexcept { return status == 200 && exception_code == 0; }

    // The server's error text on one line, without ClickHouse's boilerplate.
    std::string message() const
    {
        std::string m = body.substr(0, body.find('\n'));
        if (auto tail = m.find(", e.what() = "); tail != std::string::npos)
            m.erase(tail);
        while (!m.empty() && (m.back() == ' ' || m.back() == '\r'))
            m.pop_back();
        return m;
    }
};

// How a failed request should be handled by whoever retries or reports it.
enum class failure {
    none,      // it worked
    auth,      // credentials or grants: retrying will not help until they are fixed
    schema,    // a table or column is missing: re-read the schema, then retry
    rejected,  // the request or its rows are invalid: do not retry, keep them aside
    retryable, // the server is overloaded, restarting or failed: retry later
};

constexpr const char* to_string(failure f) noexcept
{
    switch (f) {
    case failure::none: return "none";
    case failure::auth: return "auth";
    case failure::schema: return "schema";
    case failure::rejected: return "rejected";
    case failure::retryable: return "retryable";
    }
    return "unknown";
}

namespace detail {

template <std::size_t N>
constexpr bool contains(const int (&codes)[N], int code) noexcept
{
    return std::find(std::begin(codes), std::end(codes), code) != std::end(codes);
}

// ClickHouse error codes (src/Common/ErrorCodes.cpp) grouped by what to do.
inline constexpr int auth_codes[] = {192, 193, 194, 195, 497, 516};  // unknown user, wrong/required password, IP, access denied, auth failed
inline constexpr int schema_codes[] = {8, 10, 16, 47, 60, 81};      // missing column/identifier/table/database
inline constexpr int rejected_codes[] = {6, 26, 27, 32, 33, 38, 41, 53, 62, 69, 70, 72, 108, 117, 128, 131,
                                         190, 321, 349, 467};   // unparsable or invalid data, syntax
inline constexpr int retry_codes[] = {159, 164, 202, 203, 209, 210, 241, 242, 252, 319, 394, 425, 999};
// timeout, readonly, too many queries/connections, socket/network, memory, read-only table,
// too many parts, unknown insert status, query cancelled, system error, keeper

inline int parse_code_prefix(std::string_view body) noexcept
{
    constexpr std::string_view prefix = "Code: ";
    if (body.substr(0, prefix.size()) != prefix)
        return 0;
    body.remove_prefix(prefix.size());
    int code = 0;
    auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), code);
    return ec == std::errc() ? code : 0;
}

} // namespace detail

inline failure classify(const response& r) noexcept
{
    if (r.ok())
        return failure::none;
    const int code = r.exception_code;
    if (detail::contains(detail::auth_codes, code) || r.status == 401 || r.status == 403)
        return failure::auth;
    if (detail::contains(detail::schema_codes, code))
        return failure::schema;
    if (detail::contains(detail::rejected_codes, code))
        return failure::rejected;
    if (detail::contains(detail::retry_codes, code) || r.status >= 500 || r.status == 408 || r.status == 429)
        return failure::retryable;
    return failure::rejected;
}

// A request that got no HTTP answer: refused, unresolvable, TLS failure, timeout.
class transport_error : public std::runtime_error {
public:
    enum class kind { connect, timeout, tls, other };

    transport_error(kind k, std::string url, const std::string& message)
        : std::runtime_error(message), kind_(k), url_(std::move(url))
    {
    }
    kind what_kind() const noexcept { return kind_; }
    const std::string& url() const noexcept { return url_; }

private:
    kind kind_;
    std::string url_;
};

// The server answered with an error.
class server_error : public std::runtime_error {
public:
    server_error(const std::string& message, response r, failure f)
        : std::runtime_error(message), response_(std::move(r)), failure_(f)
    {
    }
    const response& answer() const noexcept { return response_; }
    long status() const noexcept { return response_.status; }
    int code() const noexcept { return response_.exception_code; }
    failure kind() const noexcept { return failure_; }

private:
    response response_;
    failure failure_;
};

class client {
public:
    explicit client(std::string url, client_options options = {})
        : url_(std::move(url)), options_(std::move(options))
    {
        if (url_.find("://") == std::string::npos)
            throw config_error("ClickHouse URL '" + url_ + "' has no scheme; use http://host:8123/ or https://host:8443/");
        if (auto at = url_.find('@'); at != std::string::npos && at < url_.find('/', url_.find("://") + 3))
            throw config_error("ClickHouse URL '" + redacted_url() +
                               "' carries credentials; pass them in CLICKHOUSE_USER and CLICKHOUSE_PASSWORD or a password file instead");
        static const bool curl_ready = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
        if (!curl_ready)
            throw config_error("libcurl failed to initialise");
        handle_.reset(curl_easy_init());
        if (!handle_)
            throw config_error("libcurl could not create a handle");
    }

    const std::string& url() const noexcept { return url_; }
    const client_options& options() const noexcept { return options_; }

    // TCP connections opened so far; stays at 1 while keep-alive holds.
    std::uint64_t connections_opened() const noexcept { return connections_opened_; }

    // Sends `query` and returns the answer whatever its status. With `data`
    // (INSERT ... FORMAT X), the query goes in the URL and `data` is the body;
    // without, the query is the body. Throws transport_error when no answer came.
    response post(std::string_view query, std::string_view data = {}, const settings& params = {})
    {
        CURL* h = handle_.get();
        const bool query_in_url = !data.empty();
        std::string target = request_url(query_in_url ? query : std::string_view{}, params);
        std::string_view body = query_in_url ? data : query;
        if (options_.compress && !body.empty()) {
            gzip(body, compressed_);
            body = compressed_;
        }

        curl_easy_reset(h); // keeps the connection cache: the next request reuses the socket
        curl_easy_setopt(h, CURLOPT_URL, target.c_str());
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, options_.auth.user.c_str());
        curl_easy_setopt(h, CURLOPT_PASSWORD, options_.auth.password.c_str());
        set_tls(h);

        curl_slist* headers = nullptr;
        headers = curl_slist_append(headers, "Expect:"); // no 100-continue round trip
        headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
        if (options_.compress && !body.empty())
            headers = curl_slist_append(headers, "Content-Encoding: gzip");
        std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(headers, &curl_slist_free_all);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

        response r;
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &append_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &read_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.exception_code);
        error_buffer_[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer_);

        CURLcode rc = curl_easy_perform(h);
        long opened = 0;
        if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &opened) == CURLE_OK)
            connections_opened_ += static_cast<std::uint64_t>(opened);
        if (rc != CURLE_OK)
            throw transport_failure(rc, error_buffer_);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        if (r.exception_code == 0 && r.status != 200)
            r.exception_code = detail::parse_code_prefix(r.body);
        return r;
    }

    // post() that throws server_error unless the answer is ok; returns the body.
    std::string execute(std::string_view query, std::string_view data = {}, const settings& params = {})
    {
        response r = post(query, data, params);
        if (!r.ok())
            throw error_for(std::move(r));
        return std::move(r.body);
    }

    // The error to throw for a failed answer, with a message that names the fix.
    server_error error_for(response r) const
    {
        failure f = classify(r);
        std::string where = "ClickHouse at " + redacted_url();
        std::string what = r.message().empty() ? "HTTP " + std::to_string(r.status) : r.message();
        std::string message;
        switch (f) {
        case failure::auth:
            message = where + " rejected user '" + options_.auth.user + "' (" + what +
                      "); check the credentials in CLICKHOUSE_USER and CLICKHOUSE_PASSWORD or the password file, and the user's grants";
            break;
        case failure::schema:
            message = r.exception_code == 81
                          ? where + " has no such database (" + what + "); create it or name an existing one"
                          : where + " lacks a table or column (" + what + "); apply the migrations with micro_sentinel_migrate";
            break;
        case failure::retryable:
            message = where + " failed (HTTP " + std::to_string(r.status) + ": " + what + "); it may be overloaded or restarting";
            break;
        default:
            message = where + " refused the request (HTTP " + std::to_string(r.status) + ": " + what + ")";
            break;
        }
        return server_error(message, std::move(r), f);
    }

    // The URL without any user information, for messages.
    std::string redacted_url() const
    {
        auto scheme_end = url_.find("://");
        auto at = url_.find('@');
        if (scheme_end == std::string::npos || at == std::string::npos)
            return url_;
        return url_.substr(0, scheme_end + 3) + url_.substr(at + 1);
    }

private:
    struct curl_deleter {
        void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
    };

    std::string request_url(std::string_view query, const settings& params) const
    {
        std::string target = url_;
        char separator = target.find('?') == std::string::npos ? '?' : '&';
        auto add = [&](std::string_view key, std::string_view value) {
            target += separator;
            separator = '&';
            target += escape(key);
            target += '=';
            target += escape(value);
        };
        if (!query.empty())
            add("query", query);
        if (!options_.database.empty())
            add("database", options_.database);
        for (const auto& [key, value] : params)
            add(key, value);
        return target;
    }

    std::string escape(std::string_view s) const
    {
        char* e = curl_easy_escape(handle_.get(), s.data(), static_cast<int>(s.size()));
        if (!e)
            throw config_error("libcurl could not escape a URL parameter");
        std::string out(e);
        curl_free(e);
        return out;
    }

    void set_tls(CURL* h) const
    {
        const tls_options& t = options_.tls;
        if (!t.ca_file.empty())
            curl_easy_setopt(h, CURLOPT_CAINFO, t.ca_file.c_str());
        if (!t.cert_file.empty())
            curl_easy_setopt(h, CURLOPT_SSLCERT, t.cert_file.c_str());
        if (!t.key_file.empty())
            curl_easy_setopt(h, CURLOPT_SSLKEY, t.key_file.c_str());
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, t.verify ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, t.verify ? 2L : 0L);
    }

    transport_error transport_failure(CURLcode rc, const char* detail) const
    {
        std::string why = *detail ? detail : curl_easy_strerror(rc);
        std::string where = redacted_url();
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            return transport_error(transport_error::kind::connect, url_,
                                   "cannot connect to ClickHouse at " + where + " (" + why +
                                       "); check that the server is running and the URL is right");
        case CURLE_OPERATION_TIMEDOUT:
            return transport_error(transport_error::kind::timeout, url_,
                                   "ClickHouse at " + where + " did not answer in time (" + why +
                                       "); the server may be overloaded, or raise the timeout");
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
            return transport_error(transport_error::kind::tls, url_,
                                   "TLS with ClickHouse at " + where + " failed (" + why +
                                       "); check the CA file, client certificate and host name");
        default:
            return transport_error(transport_error::kind::other, url_,
                                   "request to ClickHouse at " + where + " failed (" + why + ")");
        }
    }

    static void gzip(std::string_view in, std::string& out)
    {
        z_stream z{};
        // windowBits 15 + 16: a gzip header rather than a zlib one.
        if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            throw config_error("zlib could not start gzip compression");
        out.resize(deflateBound(&z, static_cast<uLong>(in.size())) + 32);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z.avail_in = static_cast<uInt>(in.size());
        z.next_out = reinterpret_cast<Bytef*>(out.data());
        z.avail_out = static_cast<uInt>(out.size());
        int rc = deflate(&z, Z_FINISH);
        out.resize(z.total_out);
        deflateEnd(&z);
        if (rc != Z_STREAM_END)
            throw config_error("zlib failed to gzip a request body");
    }

    static std::size_t append_body(char* data, std::size_t size, std::size_t count, void* user)
    {
        static_cast<std::string*>(user)->append(data, size * count);
        return size * count;
    }

    static std::size_t read_header(char* data, std::size_t size, std::size_t count, void* user)
    {
        std::string_view line(data, size * count);
        constexpr std::string_view name = "x-clickhouse-exception-code:";
        if (line.size() > name.size()) {
            bool match = true;
            for (std::size_t i = 0; i < name.size() && match; ++i)
                match = static_cast<char>(std::tolower(static_cast<unsigned char>(line[i]))) == name[i];
            if (match) {
                std::string_view value = line.substr(name.size());
                while (!value.empty() && value.front() == ' ')
                    value.remove_prefix(1);
                int code = 0;
                if (std::from_chars(value.data(), value.data() + value.size(), code).ec == std::errc())
                    *static_cast<int*>(user) = code;
            }
        }
        return size * count;
    }

    std::string url_;
    client_options options_;
    std::unique_ptr<CURL, curl_deleter> handle_;
    std::string compressed_;
    char error_buffer_[CURL_ERROR_SIZE] = {};
    std::uint64_t connections_opened_ = 0;
};

} // namespace microsentinel::clickhouse
