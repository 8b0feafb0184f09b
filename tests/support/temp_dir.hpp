#pragma once
// A fresh directory under /tmp for one test, removed with everything in it
// when it goes out of scope, a failing test included.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace microsentinel::testing {

class temp_dir {
public:
    temp_dir()
    {
        char tmpl[] = "/tmp/ms-test-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr)
            throw std::runtime_error(std::string("mkdtemp in /tmp: ") + std::strerror(errno));
        path_ = tmpl;
    }
    ~temp_dir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

    // Writes `bytes` to the file `name` here; returns its path.
    std::filesystem::path write(std::string_view name, std::string_view bytes) const
    {
        auto file = path_ / name;
        std::ofstream out(file, std::ios::binary);
        out.write(bytes.data(), std::streamsize(bytes.size()));
        if (!out)
            throw std::runtime_error("cannot write " + file.string());
        return file;
    }

private:
    std::filesystem::path path_;
};

} // namespace microsentinel::testing
