#pragma once
// Child processes for the collector tests: run the loader (or bpftool) with a
// time limit, capture what it printed, and never leave one running.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace microsentinel::testing {

struct run_result {
    int exit_code = -1; // -1: killed at the time limit or by a signal
    std::string out;
    std::string err;
};

inline std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A child whose stdout and stderr go to files in `dir`; killed if still
// running when destroyed.
class child_process {
public:
    child_process(std::vector<std::string> argv, const std::string& dir)
    {
        static int counter = 0;
        const std::string stem = dir + "/child" + std::to_string(++counter);
        out_path_ = stem + ".out";
        err_path_ = stem + ".err";
        pid_ = fork();
        if (pid_ < 0)
            throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(out, 1);
            dup2(err, 2);
            std::vector<char*> args;
            for (auto& a : argv)
                args.push_back(a.data());
            args.push_back(nullptr);
            execvp(args[0], args.data());
            _exit(127);
        }
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process()
    {
        if (pid_ > 0 && !done_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }

    void signal(int sig) { kill(pid_, sig); }

    run_result wait(std::chrono::milliseconds limit)
    {
        const auto end = std::chrono::steady_clock::now() + limit;
        int status = 0;
        while (!done_) {
            pid_t r = waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                done_ = true;
                break;
            }
            if (std::chrono::steady_clock::now() >= end) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
                done_ = true;
                status = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        run_result r;
        r.exit_code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = read_text(out_path_);
        r.err = read_text(err_path_);
        return r;
    }

private:
    pid_t pid_ = -1;
    bool done_ = false;
    std::string out_path_, err_path_;
};

inline run_result run(std::vector<std::string> argv, const std::string& dir,
                      std::chrono::milliseconds limit = std::chrono::seconds(60))
{
    child_process p(std::move(argv), dir);
    return p.wait(limit);
}

inline std::string make_temp_dir()
{
    char tmpl[] = "/tmp/ms-bpf-test-XXXXXX";
    if (!mkdtemp(tmpl))
        throw std::runtime_error("mkdtemp failed");
    return tmpl;
}

} // namespace microsentinel::testing
