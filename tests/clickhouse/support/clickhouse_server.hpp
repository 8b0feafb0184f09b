#pragma once
// A real ClickHouse server for tests: Debian's clickhouse-server (18.16) started
// on free loopback ports with its own data directory and generated config,
// killed with -9 and restarted on the same data and ports when a test asks,
// and removed with its directory at the end.
//
//   microsentinel::testing::clickhouse_server server;   // skips (77) if the package is missing
//   microsentinel::clickhouse::client c(server.url());
//   server.query("CREATE TABLE ...");
//   server.kill();  server.start();                      // crash and recover
#include <microsentinel/clickhouse/http.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "requirements.hpp"
#include "temp_dir.hpp"

namespace microsentinel::testing {

class clickhouse_server {
public:
    // A second user with a password, for tests of credentials.
    static constexpr const char* test_user = "ms_test";
    static constexpr const char* test_password = "ms_test_password";

    struct options {
        bool tls = false; // also serve HTTPS with a certificate of a CA made for the test (needs openssl)
    };

    // Finds the server binary (skips the test if there is none), prepares a
    // temporary directory and starts the server.
    clickhouse_server() : clickhouse_server(options{}) {}

    explicit clickhouse_server(options o) : options_(o)
    {
        find_binary();
        if (options_.tls)
            openssl_ = require_program("openssl", "openssl");
        dir_ = tmp_.emplace().path().string();
        if (options_.tls)
            make_certificates();
        start_on_free_ports();
    }

    clickhouse_server(const clickhouse_server&) = delete;
    clickhouse_server& operator=(const clickhouse_server&) = delete;

    ~clickhouse_server()
    {
        kill();
    }

    std::string url() const { return "http://127.0.0.1:" + std::to_string(http_port_) + "/"; }
    std::uint16_t http_port() const noexcept { return http_port_; }
    // With options::tls: "https://127.0.0.1:<port>/", and the CA that signed its certificate.
    std::string https_url() const { return "https://127.0.0.1:" + std::to_string(https_port_) + "/"; }
    std::string ca_file() const { return dir_ + "/tls/ca.crt"; }
    std::uint16_t tcp_port() const noexcept { return tcp_port_; }
    const std::string& directory() const noexcept { return dir_; }
    std::string data_directory() const { return dir_ + "/data"; }
    bool running() const noexcept { return pid_ > 0; }

    // "18.16.1" or whatever the server reports.
    std::string version() { return trim(query("SELECT version()")); }

    // Runs `sql` as the default user; throws clickhouse::server_error on failure.
    std::string query(std::string_view sql)
    {
        if (!admin_)
            admin_ = std::make_unique<clickhouse::client>(url());
        return admin_->execute(sql);
    }

    // SIGKILL, like a crash or an OOM kill; the data directory stays.
    void kill()
    {
        admin_.reset();
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = 0;
    }

    // Starts the server again on the same ports and data, and waits until it answers.
    void start()
    {
        if (pid_ > 0)
            return;
        spawn();
        wait_ready(std::chrono::seconds(60));
    }

    void restart()
    {
        kill();
        start();
    }

    // Last lines of the server's error log and output, for failure messages.
    std::string log_tail(std::size_t max_bytes = 4000) const
    {
        std::string text;
        for (const char* name : {"/server.err.log", "/stdout.log"}) {
            std::ifstream in(dir_ + name);
            std::stringstream s;
            s << in.rdbuf();
            std::string part = s.str();
            if (part.size() > max_bytes)
                part = part.substr(part.size() - max_bytes);
            text += part;
        }
        return text;
    }

private:
    void find_binary()
    {
        for (const char* candidate : {"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"}) {
            if (access(candidate, X_OK) == 0) {
                argv_ = {candidate};
                return;
            }
        }
        if (std::string found = find_program("clickhouse-server"); !found.empty()) {
            argv_ = {found};
            return;
        }
        if (std::string found = find_program("clickhouse"); !found.empty()) {
            argv_ = {found, "server"};
            return;
        }
        skip_or_fail("clickhouse-server not found; install the Debian package clickhouse-server");
    }

    static std::uint16_t free_port()
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            throw std::runtime_error("socket() failed while looking for a free port");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            close(fd);
            throw std::runtime_error("cannot bind a loopback port for the ClickHouse test server");
        }
        close(fd);
        return ntohs(addr.sin_port);
    }

    // Ports are picked by binding port 0 and released before the server binds
    // them; another process may take one in between, so a failed start retries.
    void start_on_free_ports()
    {
        std::string last_error;
        for (int attempt = 0; attempt < 3; ++attempt) {
            http_port_ = free_port();
            do {
                tcp_port_ = free_port();
                https_port_ = options_.tls ? free_port() : 0;
            } while (tcp_port_ == http_port_ || https_port_ == http_port_ || https_port_ == tcp_port_);
            write_config();
            spawn();
            try {
                wait_ready(std::chrono::seconds(60));
                return;
            } catch (const std::exception& e) {
                last_error = e.what();
                kill();
            }
        }
        throw std::runtime_error(last_error);
    }

    void write_config() const
    {
        std::filesystem::create_directories(dir_ + "/data/tmp");
        std::filesystem::create_directories(dir_ + "/data/user_files");
        std::filesystem::create_directories(dir_ + "/data/format_schemas");
        std::ofstream config(dir_ + "/config.xml");
        config << "<?xml version=\"1.0\"?>\n<yandex>\n"
               << "  <logger><level>warning</level><log>" << dir_ << "/server.log</log><errorlog>" << dir_
               << "/server.err.log</errorlog><size>10M</size><count>1</count></logger>\n"
               << "  <http_port>" << http_port_ << "</http_port>\n"
               << "  <tcp_port>" << tcp_port_ << "</tcp_port>\n"
               << "  <listen_host>127.0.0.1</listen_host>\n"
               << "  <path>" << dir_ << "/data/</path>\n"
               << "  <tmp_path>" << dir_ << "/data/tmp/</tmp_path>\n"
               << "  <user_files_path>" << dir_ << "/data/user_files/</user_files_path>\n"
               << "  <format_schema_path>" << dir_ << "/data/format_schemas/</format_schema_path>\n"
               << "  <users_config>" << dir_ << "/users.xml</users_config>\n"
               << "  <default_profile>default</default_profile>\n"
               << "  <default_database>default</default_database>\n"
               << "  <timezone>UTC</timezone>\n"
               << "  <mark_cache_size>67108864</mark_cache_size>\n"
               << "  <uncompressed_cache_size>67108864</uncompressed_cache_size>\n"
               << "  <max_concurrent_queries>64</max_concurrent_queries>\n"
               << "  <keep_alive_timeout>30</keep_alive_timeout>\n"
               << "  <mlock_executable>false</mlock_executable>\n";
        if (options_.tls)
            config << "  <https_port>" << https_port_ << "</https_port>\n"
                   << "  <openSSL><server><certificateFile>" << dir_ << "/tls/server.crt</certificateFile>"
                   << "<privateKeyFile>" << dir_ << "/tls/server.key</privateKeyFile>"
                   << "<verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>"
                   << "<cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols>"
                   << "<preferServerCiphers>true</preferServerCiphers></server></openSSL>\n";
        config << "</yandex>\n";
        std::ofstream users(dir_ + "/users.xml");
        const char* networks = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>";
        users << "<?xml version=\"1.0\"?>\n<yandex>\n"
              << "  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>\n"
              << "  <users>\n"
              << "    <default><password></password>" << networks << "<profile>default</profile><quota>default</quota></default>\n"
              << "    <" << test_user << "><password>" << test_password << "</password>" << networks
              << "<profile>default</profile><quota>default</quota></" << test_user << ">\n"
              << "  </users>\n"
              << "  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>"
                 "<result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>"
                 "</interval></default></quotas>\n"
              << "</yandex>\n";
        if (!config || !users)
            throw std::runtime_error("cannot write the ClickHouse test config in " + dir_);
    }

    // A CA and a server certificate for 127.0.0.1 signed by it, with openssl.
    void make_certificates() const
    {
        std::string tls = dir_ + "/tls";
        std::filesystem::create_directories(tls);
        std::ofstream(tls + "/ext.cnf") << "subjectAltName=IP:127.0.0.1\n";
        const std::vector<std::vector<std::string>> steps = {
            {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tls + "/ca.key", "-out", tls + "/ca.crt",
             "-days", "2", "-subj", "/CN=microsentinel-test-ca"},
            {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", tls + "/server.key", "-out", tls + "/server.csr",
             "-subj", "/CN=127.0.0.1"},
            {"x509", "-req", "-in", tls + "/server.csr", "-CA", tls + "/ca.crt", "-CAkey", tls + "/ca.key",
             "-CAcreateserial", "-out", tls + "/server.crt", "-days", "2", "-extfile", tls + "/ext.cnf"},
        };
        for (const auto& step : steps) {
            std::vector<std::string> argv{openssl_};
            argv.insert(argv.end(), step.begin(), step.end());
            pid_t pid = fork();
            if (pid == 0) {
                int null_fd = open("/dev/null", O_WRONLY);
                dup2(null_fd, STDOUT_FILENO);
                dup2(null_fd, STDERR_FILENO);
                std::vector<char*> c_args;
                for (auto& a : argv)
                    c_args.push_back(a.data());
                c_args.push_back(nullptr);
                execv(c_args[0], c_args.data());
                _exit(127);
            }
            int status = 0;
            waitpid(pid, &status, 0);
            if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                throw std::runtime_error("openssl " + step[0] + " failed while making the test certificates");
        }
    }

    void spawn()
    {
        std::vector<std::string> args = argv_;
        args.push_back("--config-file=" + dir_ + "/config.xml");
        std::string out_path = dir_ + "/stdout.log";
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
            throw std::runtime_error("fork failed while starting clickhouse-server");
        if (pid == 0) {
            // The server dies with the test, even if the test crashes.
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
            int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (out >= 0) {
                dup2(out, STDOUT_FILENO);
                dup2(out, STDERR_FILENO);
                close(out);
            }
            int null_in = open("/dev/null", O_RDONLY);
            if (null_in >= 0)
                dup2(null_in, STDIN_FILENO);
            if (chdir(dir_.c_str()) != 0)
                _exit(127);
            std::vector<char*> c_args;
            for (auto& a : args)
                c_args.push_back(a.data());
            c_args.push_back(nullptr);
            execv(c_args[0], c_args.data());
            _exit(127);
        }
        pid_ = pid;
    }

    // Polls /ping until the server answers "Ok.", it exits, or `limit` passes.
    void wait_ready(std::chrono::seconds limit)
    {
        auto deadline = std::chrono::steady_clock::now() + limit;
        clickhouse::client_options options;
        options.connect_timeout = std::chrono::milliseconds(500);
        options.timeout = std::chrono::seconds(2);
        clickhouse::client probe(url(), options);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = 0;
                throw std::runtime_error("clickhouse-server exited while starting (status " + std::to_string(status) +
                                         "):\n" + log_tail());
            }
            try {
                if (probe.post("SELECT 1").ok())
                    return;
            } catch (const clickhouse::transport_error&) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        throw std::runtime_error("clickhouse-server did not answer on " + url() + " within " +
                                 std::to_string(limit.count()) + " s:\n" + log_tail());
    }

    static std::string trim(std::string s)
    {
        while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
            s.pop_back();
        return s;
    }

    options options_;
    std::string openssl_;
    std::vector<std::string> argv_;
    std::optional<temp_dir> tmp_; // made once the server can run; removed after it is killed
    std::string dir_;
    std::uint16_t http_port_ = 0;
    std::uint16_t tcp_port_ = 0;
    std::uint16_t https_port_ = 0;
    pid_t pid_ = 0;
    std::unique_ptr<clickhouse::client> admin_;
};

} // namespace microsentinel::testing
