#pragma once
// A current ClickHouse engine (chDB, 26.x) behind ClickHouse's HTTP interface:
// chdb/http_server.js started with node on a free loopback port and its own
// data directory; kill -9 and restart on the same data and port; removed at the end.
//
//   microsentinel::testing::chdb_server server;   // skips (77) without node or chdb
//   microsentinel::clickhouse::client c(server.url());
//
// Needs MICROSENTINEL_CHDB_DIR (set by microsentinel_add_clickhouse_test).
#include <microsentinel/clickhouse/http.hpp>

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "requirements.hpp"
#include "temp_dir.hpp"

namespace microsentinel::testing {

class chdb_server {
public:
    chdb_server()
    {
        node_ = find_program("node");
        if (node_.empty())
            skip_or_fail("node not found; install the Debian package nodejs and run: npm ci --prefix tests/clickhouse/chdb");
        dir_ = tmp_.emplace().path().string();
        start();
    }

    chdb_server(const chdb_server&) = delete;
    chdb_server& operator=(const chdb_server&) = delete;

    ~chdb_server()
    {
        kill();
    }

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
    std::uint16_t http_port() const noexcept { return port_; }
    std::string data_directory() const { return dir_ + "/data"; }
    bool running() const noexcept { return pid_ > 0; }

    std::string query(std::string_view sql)
    {
        if (!admin_)
            admin_ = std::make_unique<clickhouse::client>(url());
        return admin_->execute(sql);
    }

    // SIGKILL; the data directory and port stay for start().
    void kill()
    {
        admin_.reset();
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = 0;
        if (stdin_fd_ >= 0)
            close(stdin_fd_);
        stdin_fd_ = -1;
    }

    // Starts (again) on the same data directory and, after the first start, the same port.
    void start()
    {
        if (pid_ > 0)
            return;
        spawn();
        std::string line = read_url_line(std::chrono::seconds(60));
        auto colon = line.rfind(':');
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
    }

    void restart()
    {
        kill();
        start();
    }

    std::string log_tail() const
    {
        std::ifstream in(dir_ + "/stderr.log");
        std::stringstream s;
        s << in.rdbuf();
        std::string text = s.str();
        return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
    }

private:
    void spawn()
    {
        std::filesystem::create_directories(dir_ + "/data");
        int out_pipe[2], in_pipe[2];
        if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(in_pipe, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe failed while starting the chDB server");
        std::string script = std::string(MICROSENTINEL_CHDB_DIR) + "/http_server.js";
        std::string data = data_directory();
        std::string port = std::to_string(port_);
        std::string err_path = dir_ + "/stderr.log";
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
            throw std::runtime_error("fork failed while starting the chDB server");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
            dup2(in_pipe[0], STDIN_FILENO);
            dup2(out_pipe[1], STDOUT_FILENO);
            int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (err >= 0)
                dup2(err, STDERR_FILENO);
            close(in_pipe[0]);
            close(in_pipe[1]);
            close(out_pipe[0]);
            close(out_pipe[1]);
            execl(node_.c_str(), node_.c_str(), script.c_str(), data.c_str(), port.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        close(in_pipe[0]);
        close(out_pipe[1]);
        stdin_fd_ = in_pipe[1]; // closing it tells the server to exit
        stdout_fd_ = out_pipe[0];
        pid_ = pid;
    }

    std::string read_url_line(std::chrono::seconds limit)
    {
        std::unique_ptr<int, void (*)(int*)> guard(&stdout_fd_, [](int* fd) {
            close(*fd);
            *fd = -1;
        });
        auto deadline = std::chrono::steady_clock::now() + limit;
        std::string line;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{stdout_fd_, POLLIN, 0};
            if (poll(&p, 1, 100) > 0) {
                char c;
                ssize_t n = read(stdout_fd_, &c, 1);
                if (n == 1) {
                    if (c == '\n')
                        return line;
                    line += c;
                    continue;
                }
                int status = 0;
                waitpid(pid_, &status, 0);
                pid_ = 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
                    skip_or_fail("chdb is not installed; run: npm ci --prefix tests/clickhouse/chdb");
                throw std::runtime_error("the chDB HTTP server exited while starting:\n" + log_tail());
            }
        }
        kill();
        throw std::runtime_error("the chDB HTTP server did not start within " + std::to_string(limit.count()) +
                                 " s:\n" + log_tail());
    }

    std::string node_;
    std::optional<temp_dir> tmp_; // made once the server can run; removed after it is killed
    std::string dir_;
    std::uint16_t port_ = 0;
    pid_t pid_ = 0;
    int stdin_fd_ = -1;
    int stdout_fd_ = -1;
    std::unique_ptr<clickhouse::client> admin_;
};

} // namespace microsentinel::testing
