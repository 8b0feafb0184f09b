// Data-object registry against a live child process whose mappings the test
// controls: the child maps regions at chosen addresses, reports them through a
// pipe, then unmaps, maps, execs and exits on command.
#include <doctest/doctest.h>

#include <microsentinel/data_objects.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using microsentinel::data_object_registry;
using microsentinel::data_object_row;
using microsentinel::registry_config;

namespace {

const std::uintptr_t hint_a = 0x7e1000000000; // anonymous, writable
const std::uintptr_t hint_b = 0x7e2000000000; // file-backed, writable (private)
const std::uintptr_t hint_r = 0x7e3000000000; // anonymous, read-only
const std::uintptr_t hint_c = 0x7e4000000000; // mapped later, on command
const std::uintptr_t unmapped = 0x7e5000000000; // a user address nothing maps: a miss

struct child_layout {
    std::uint64_t a, b, r, stack, heap;
};

std::size_t page() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

void* map_at(std::uintptr_t hint, std::size_t size, int prot, int flags, int fd)
{
    void* p = mmap(reinterpret_cast<void*>(hint), size, prot, flags | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == MAP_FAILED) // the hint is taken: any address will do, the child reports it
        p = mmap(nullptr, size, prot, flags, fd, 0);
    return p;
}

bool write_all(int fd, const void* data, std::size_t n)
{
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// The child: never returns.
[[noreturn]] void child_main(int cmd_fd, int rep_fd, const char* file_path)
{
    const std::size_t pg = page();
    const int fd = open(file_path, O_RDWR);
    volatile int stack_marker = 1;
    // Grow the break directly: malloc may not use the brk heap (sanitizers).
    void* heap = sbrk(static_cast<intptr_t>(pg));
    if (heap == reinterpret_cast<void*>(-1))
        _exit(2);
    static_cast<char*>(heap)[0] = 1;
    void* a = map_at(hint_a, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    void* b = map_at(hint_b, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
    void* r = map_at(hint_r, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    if (fd < 0 || a == MAP_FAILED || b == MAP_FAILED || r == MAP_FAILED)
        _exit(2);
    static_cast<char*>(a)[0] = 1; // touch, so the mappings are real
    static_cast<char*>(b)[0] = 1;
    const child_layout layout{reinterpret_cast<std::uint64_t>(a), reinterpret_cast<std::uint64_t>(b),
                              reinterpret_cast<std::uint64_t>(r),
                              reinterpret_cast<std::uint64_t>(&stack_marker),
                              reinterpret_cast<std::uint64_t>(heap)};
    if (!write_all(rep_fd, &layout, sizeof layout))
        _exit(3);
    for (;;) {
        char cmd = 0;
        const ssize_t n = read(cmd_fd, &cmd, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || cmd == 'x')
            _exit(0);
        std::uint64_t reply = 0;
        if (cmd == 'u') {
            munmap(a, 4 * pg);
        } else if (cmd == 'm') {
            void* c = map_at(hint_c, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
            if (c == MAP_FAILED)
                _exit(4);
            static_cast<char*>(c)[0] = 1;
            reply = reinterpret_cast<std::uint64_t>(c);
        } else if (cmd == 'e') {
            execl("/bin/sleep", "sleep", "120", static_cast<char*>(nullptr));
            _exit(5);
        }
        if (!write_all(rep_fd, &reply, sizeof reply))
            _exit(3);
    }
}

// A forked child driven through two pipes; killed and reaped on destruction.
class controlled_child {
public:
    explicit controlled_child(const std::string& file_path)
    {
        int cmd[2], rep[2];
        REQUIRE(pipe2(cmd, O_CLOEXEC) == 0);
        REQUIRE(pipe2(rep, O_CLOEXEC) == 0);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            close(cmd[1]);
            close(rep[0]);
            child_main(cmd[0], rep[1], file_path.c_str());
        }
        close(cmd[0]);
        close(rep[1]);
        cmd_ = cmd[1];
        rep_ = rep[0];
        if (!read_exact(&layout_, sizeof layout_)) {
            int status = 0;
            kill(pid_, SIGKILL); // a throwing constructor runs no destructor
            waitpid(pid_, &status, 0);
            close(cmd_);
            close(rep_);
            FAIL("the child did not report its mappings (exit status " << status << ")");
        }
    }
    ~controlled_child()
    {
        close(cmd_);
        close(rep_);
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    controlled_child(const controlled_child&) = delete;
    controlled_child& operator=(const controlled_child&) = delete;

    std::uint32_t pid() const { return static_cast<std::uint32_t>(pid_); }
    const child_layout& layout() const { return layout_; }

    // Sends a command and waits for its reply.
    std::uint64_t command(char c)
    {
        REQUIRE(write_all(cmd_, &c, 1));
        std::uint64_t reply = 0;
        REQUIRE(read_exact(&reply, sizeof reply));
        return reply;
    }
    void send(char c) { REQUIRE(write_all(cmd_, &c, 1)); }

    void kill_and_reap()
    {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

private:
    bool read_exact(void* out, std::size_t n)
    {
        char* p = static_cast<char*>(out);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (n > 0) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return false;
            pollfd pfd{rep_, POLLIN, 0};
            if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
                continue;
            const ssize_t r = read(rep_, p, n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return false;
            p += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    }

    pid_t pid_ = -1;
    int cmd_ = -1;
    int rep_ = -1;
    child_layout layout_{};
};

struct temp_dir {
    std::string path;
    temp_dir()
    {
        char tmpl[] = "/tmp/ms-registry-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

std::string make_data_file(const temp_dir& dir)
{
    const std::string path = dir.path + "/data.bin";
    const int fd = open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, static_cast<off_t>(2 * page())) == 0);
    close(fd);
    return path;
}

const data_object_row* row_with_base(const std::vector<data_object_row>& rows, std::uint64_t base)
{
    auto it = std::find_if(rows.begin(), rows.end(), [&](const data_object_row& r) { return r.base == base; });
    return it == rows.end() ? nullptr : &*it;
}

const data_object_row* row_with_id(const std::vector<data_object_row>& rows, std::uint64_t id)
{
    auto it = std::find_if(rows.begin(), rows.end(), [&](const data_object_row& r) { return r.object_id == id; });
    return it == rows.end() ? nullptr : &*it;
}

registry_config eager()
{
    registry_config cfg;
    cfg.min_reread_interval = std::chrono::nanoseconds(0);
    return cfg;
}

std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
}

void write_text(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
}

} // namespace

TEST_CASE("the registry resolves a live process's data mappings and follows unmap, map, exec and exit")
{
    temp_dir dir;
    const std::string file = make_data_file(dir);
    controlled_child child(file);
    const child_layout& at = child.layout();
    const std::uint32_t pid = child.pid();
    const std::size_t pg = page();

    data_object_registry reg("host-a", eager());
    const std::uint64_t id_a = reg.resolve(pid, at.a + 100);
    const std::uint64_t id_b = reg.resolve(pid, at.b + 10);
    const std::uint64_t id_stack = reg.resolve(pid, at.stack);
    const std::uint64_t id_heap = reg.resolve(pid, at.heap);

    SUBCASE("writable mappings resolve to stable, distinct, non-address ids; read-only ones do not")
    {
        CHECK(id_a != 0);
        CHECK(id_a != at.a);
        CHECK(reg.resolve(pid, at.a) == id_a);
        CHECK(reg.resolve(pid, at.a + 4 * pg - 1) == id_a);
        CHECK(id_b != 0);
        CHECK(id_stack != 0);
        CHECK(id_heap != 0);
        std::vector<std::uint64_t> ids{id_a, id_b, id_stack, id_heap};
        std::sort(ids.begin(), ids.end());
        CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
        CHECK(reg.resolve(pid, at.r) == 0);
        CHECK(reg.resolve(pid, unmapped) == 0);
    }

    SUBCASE("each object is reported once, shaped like ms_data_objects")
    {
        const auto rows = reg.take_new_objects();
        const data_object_row* a = row_with_base(rows, at.a);
        REQUIRE(a != nullptr);
        CHECK(a->object_id == id_a);
        CHECK(a->host == "host-a");
        CHECK(a->mapping == "[anon]");
        CHECK(a->size == 4 * pg);
        CHECK(a->permissions == "rw-p");

        const data_object_row* b = row_with_base(rows, at.b);
        REQUIRE(b != nullptr);
        CHECK(b->object_id == id_b);
        CHECK(b->mapping.ends_with("/data.bin"));
        CHECK(b->size == 2 * pg);
        CHECK(b->permissions == "rw-p");

        const data_object_row* stack = row_with_id(rows, id_stack);
        REQUIRE(stack != nullptr);
        CHECK(stack->mapping == "[stack]");
        CHECK(stack->base <= at.stack);
        CHECK(at.stack < stack->base + stack->size);
        const data_object_row* heap = row_with_id(rows, id_heap);
        REQUIRE(heap != nullptr);
        CHECK(heap->mapping == "[heap]");

        CHECK(row_with_base(rows, at.r) == nullptr);
        std::vector<std::uint64_t> ids;
        for (const auto& r : rows)
            ids.push_back(r.object_id);
        std::sort(ids.begin(), ids.end());
        CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());

        CHECK(reg.resolve(pid, at.a + 1) == id_a);
        CHECK(reg.refresh(pid));
        CHECK(reg.take_new_objects().empty());
    }

    SUBCASE("a restarted agent gets the same ids; another host gets other ids")
    {
        data_object_registry restarted("host-a", eager());
        CHECK(restarted.resolve(pid, at.a + 7) == id_a);
        CHECK(restarted.resolve(pid, at.b) == id_b);
        CHECK(restarted.resolve(pid, at.stack) == id_stack);
        CHECK(restarted.resolve(pid, at.heap) == id_heap);

        data_object_registry other_host("host-b", eager());
        CHECK(other_host.resolve(pid, at.a + 7) != id_a);
    }

    SUBCASE("explicit registration takes precedence: the pid's own, then global, then automatic")
    {
        const std::uint64_t ring = reg.register_object(pid, "ring", at.a + pg, pg);
        const std::uint64_t shared = reg.register_object(0, "shared", at.a, 3 * pg);
        CHECK(ring != 0);
        CHECK(shared != 0);
        CHECK(ring != id_a);
        CHECK(reg.resolve(pid, at.a + pg + 5) == ring);
        CHECK(reg.resolve(pid, at.a + 5) == shared);
        CHECK(reg.resolve(pid, at.a + 3 * pg + 5) == id_a);
        CHECK(reg.register_object(pid, "ring", at.a + pg, pg) == ring);
        CHECK_THROWS_AS(reg.register_object(pid, "other", at.a + pg + 8, 16), std::invalid_argument);

        const auto rows = reg.take_new_objects();
        const data_object_row* r = row_with_id(rows, ring);
        REQUIRE(r != nullptr);
        CHECK(r->mapping == "ring");
        CHECK(r->base == at.a + pg);
        CHECK(r->size == pg);
        CHECK(r->permissions == "rw-p");
        CHECK(std::count_if(rows.begin(), rows.end(), [&](const data_object_row& x) { return x.object_id == ring; }) == 1);

        data_object_registry restarted("host-a", eager());
        CHECK(restarted.register_object(pid, "ring", at.a + pg, pg) == ring);
    }

    SUBCASE("unmapping and mapping are picked up on the next miss, at most once per interval")
    {
        registry_config slow_cfg;
        slow_cfg.min_reread_interval = std::chrono::hours(1);
        data_object_registry slow("host-a", slow_cfg);
        CHECK(slow.resolve(pid, at.a) == id_a);
        const std::uint64_t reads = slow.stats().maps_reads;

        child.command('u');
        const std::uint64_t c = child.command('m');
        REQUIRE(c != 0);

        for (int i = 0; i < 1000; ++i)
            CHECK(slow.resolve(pid, c + static_cast<std::uint64_t>(i)) == 0);
        CHECK(slow.stats().maps_reads == reads);
        CHECK(slow.stats().rereads_rate_limited == 1000);
        CHECK(slow.stats().misses == 1000);

        const std::uint64_t id_c = reg.resolve(pid, c + 1);
        CHECK(id_c != 0);
        CHECK(id_c != id_a);
        CHECK(reg.resolve(pid, at.a + 1) == 0);
        CHECK(reg.resolve(pid, at.b + 1) == id_b);
        const auto rows = reg.take_new_objects();
        const data_object_row* row_c = row_with_id(rows, id_c);
        REQUIRE(row_c != nullptr);
        CHECK(row_c->base == c);
        CHECK(row_c->size == 3 * pg);

        CHECK(slow.refresh(pid));
        CHECK(slow.resolve(pid, c + 1) == id_c);
    }

    SUBCASE("after exec, the old process image's objects are gone and its stack is a new object")
    {
        reg.register_object(pid, "ring", at.a + pg, pg);
        reg.take_new_objects();
        child.send('e');
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (read_text("/proc/" + std::to_string(pid) + "/comm") != "sleep"
               && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        REQUIRE(read_text("/proc/" + std::to_string(pid) + "/comm") == "sleep");

        // Hits are answered without /proc; the first miss re-reads the maps.
        CHECK(reg.resolve(pid, unmapped) == 0);
        CHECK(reg.stats().processes_replaced == 1);
        CHECK(reg.resolve(pid, at.a + 1) == 0);
        CHECK(reg.resolve(pid, at.a + pg + 1) == 0); // the explicit object belonged to the old image
        const auto rows = reg.take_new_objects();
        auto stack = std::find_if(rows.begin(), rows.end(), [](const data_object_row& r) { return r.mapping == "[stack]"; });
        REQUIRE(stack != rows.end());
        CHECK(stack->object_id != id_stack);
    }

    SUBCASE("an exited process is a counted miss and is forgotten")
    {
        child.kill_and_reap();
        const std::uint64_t failures = reg.stats().proc_read_failures;
        CHECK_NOTHROW(CHECK(reg.resolve(pid, unmapped) == 0));
        CHECK(reg.stats().proc_read_failures == failures + 1);
        CHECK(reg.stats().processes_exited == 1);
        CHECK(reg.resolve(pid, at.a + 1) == 0); // its regions were dropped
        CHECK(reg.sweep_exited() == 1);
        CHECK(reg.tracked_processes() == 0);
    }
}

TEST_CASE("addresses no process can map never cause a /proc read")
{
    data_object_registry reg("h", eager());
    const std::uint32_t self = static_cast<std::uint32_t>(getpid());
    CHECK(reg.resolve(self, 0) == 0);
    CHECK(reg.resolve(self, 0xffff888000001000ULL) == 0);
    CHECK(reg.stats().maps_reads == 0);
    CHECK(reg.stats().non_user_addresses == 2);
    CHECK(reg.stats().misses == 2);

    const std::uint64_t percpu = reg.register_object(0, "kernel percpu area", 0xffff888000000000ULL, 1 << 20);
    CHECK(reg.resolve(self, 0xffff888000001000ULL) == percpu);
    CHECK(reg.stats().maps_reads == 0);
}

TEST_CASE("a process that cannot be read is a counted miss, not an exception")
{
    SUBCASE("no such process")
    {
        data_object_registry reg("h", eager());
        CHECK(reg.resolve(0x7ffffff0, 0x1000) == 0);
        CHECK(reg.stats().proc_read_failures >= 1);
        CHECK(reg.stats().misses == 1);
    }
    SUBCASE("permission denied: another user's process")
    {
        // As root, a child drops to nobody first; either way pid 1's maps
        // belong to another user.
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
                _exit(10);
            if (geteuid() == 0)
                _exit(11);
            try {
                data_object_registry reg("h", eager());
                const bool ok = reg.resolve(1, 0x7f0000001000ULL) == 0 && reg.stats().proc_read_failures >= 1
                                && reg.stats().maps_reads == 0 && reg.stats().misses == 1;
                _exit(ok ? 0 : 12);
            } catch (...) {
                _exit(13);
            }
        }
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    SUBCASE("unreadable maps")
    {
        temp_dir root;
        REQUIRE(mkdir((root.path + "/123").c_str(), 0755) == 0);
        write_text(root.path + "/123/stat", "123 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n");
        REQUIRE(mkdir((root.path + "/123/maps").c_str(), 0755) == 0); // reading a directory fails
        registry_config cfg = eager();
        cfg.proc_root = root.path;
        data_object_registry reg("h", cfg);
        CHECK(reg.resolve(123, 0x1000) == 0);
        CHECK(reg.resolve(123, 0x1000) == 0);
        CHECK(reg.stats().proc_read_failures >= 2);
        CHECK(reg.stats().misses == 2);
    }
}

TEST_CASE("a reused pid (new start time) never inherits the old process's objects")
{
    temp_dir root;
    REQUIRE(mkdir((root.path + "/77").c_str(), 0755) == 0);
    REQUIRE(mkdir((root.path + "/sys").c_str(), 0755) == 0);
    REQUIRE(mkdir((root.path + "/sys/kernel").c_str(), 0755) == 0);
    REQUIRE(mkdir((root.path + "/sys/kernel/random").c_str(), 0755) == 0);
    write_text(root.path + "/sys/kernel/random/boot_id", "6b3c5c9e-0000-4000-8000-000000000001\n");
    write_text(root.path + "/77/maps", "10000-20000 rw-p 00000000 00:00 0 [heap]\n"
                                       "30000-31000 r--p 00000000 00:00 0 \n");
    write_text(root.path + "/77/stat", "77 (old) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1000 0 0\n");
    registry_config cfg = eager();
    cfg.proc_root = root.path;
    data_object_registry reg("h", cfg);

    const std::uint64_t old_id = reg.resolve(77, 0x10010);
    CHECK(old_id != 0);
    CHECK(reg.resolve(77, 0x30010) == 0);
    CHECK(reg.take_new_objects().size() == 1);

    write_text(root.path + "/77/stat", "77 (new) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 2000 0 0\n");
    CHECK(reg.resolve(77, 0x10010) == old_id); // a hit needs no /proc read
    CHECK(reg.sweep_exited() == 1);
    const std::uint64_t new_id = reg.resolve(77, 0x10010);
    CHECK(new_id != 0);
    CHECK(new_id != old_id);
    const auto rows = reg.take_new_objects();
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].object_id == new_id);

    write_text(root.path + "/sys/kernel/random/boot_id", "6b3c5c9e-0000-4000-8000-000000000002\n");
    data_object_registry after_reboot("h", cfg);
    CHECK(after_reboot.resolve(77, 0x10010) != new_id);
}
