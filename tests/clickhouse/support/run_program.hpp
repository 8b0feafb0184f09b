#pragma once
// Runs a program to completion and returns its exit status and output: for
// tests of the reference binaries.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace microsentinel::testing {

struct program_result {
    int exit_code = -1; // -1: killed by a signal
    std::string out;
    std::string err;
};

// `env` entries are set (or, with an empty value, unset) in the child only.
inline program_result run_program(const std::vector<std::string>& argv,
                                  const std::vector<std::pair<std::string, std::string>>& env = {})
{
    char dir_template[] = "/tmp/ms-run-XXXXXX";
    if (!mkdtemp(dir_template))
        throw std::runtime_error("mkdtemp failed");
    std::string dir = dir_template;
    std::string out_path = dir + "/out", err_path = dir + "/err";

    pid_t pid = fork();
    if (pid < 0)
        throw std::runtime_error("fork failed");
    if (pid == 0) {
        int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = open("/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || in < 0)
            _exit(126);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        dup2(in, STDIN_FILENO);
        for (const auto& [name, value] : env) {
            if (value.empty())
                unsetenv(name.c_str());
            else
                setenv(name.c_str(), value.c_str(), 1);
        }
        std::vector<char*> args;
        for (const auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);

    auto slurp = [](const std::string& path) {
        std::ifstream in(path);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    };
    program_result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    unlink(out_path.c_str());
    unlink(err_path.c_str());
    rmdir(dir.c_str());
    return r;
}

} // namespace microsentinel::testing
