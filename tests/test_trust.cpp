// The trust policy: a module file that users other than this process's and root could have
// written, through the file or a directory above it, is refused as untrusted_file, naming the
// path and the chown or chmod that fixes it; require_trusted_file = false loads it anyway. The
// files get real owners and modes. The cases that need another owner (chown, a child process that
// becomes another user) need root, which CI has; run as another user, they are skipped with a
// warning and the rest is checked.
#include "live_support.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace {

constexpr uid_t nobody = 65534;    // the user the child processes become
constexpr uid_t stranger = 65533;  // a user that owns a file and nothing else

bool is_root() { return ::geteuid() == 0; }

// What the trust policy reads: the real path (the temporary directory may be a symbolic link).
std::string real_path(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  REQUIRE(resolved != nullptr);
  std::string out = resolved;
  std::free(resolved);
  return out;
}

std::string user_name(uid_t user) {
  const passwd* entry = ::getpwuid(user);
  return entry != nullptr ? entry->pw_name : std::to_string(user);
}

void set_mode(const std::string& path, mode_t mode) { REQUIRE(::chmod(path.c_str(), mode) == 0); }

void set_owner(const std::string& path, uid_t user, gid_t group) {
  REQUIRE(::chown(path.c_str(), user, group) == 0);
}

// A copy of the test module whose main returns 7, at `path`, with `mode`.
std::string module_at(const std::string& path, mode_t mode = 0644) {
  std::filesystem::copy_file(TEST_WITH_MAIN_PATH, path);
  set_mode(path, mode);
  return real_path(path);
}

std::string make_directory(const std::string& path, mode_t mode) {
  REQUIRE(::mkdir(path.c_str(), 0700) == 0);
  set_mode(path, mode);  // chmod: the umask does not apply
  return real_path(path);
}

relib::load_options trusting_anything() {
  relib::load_options options;
  options.require_trusted_file = false;
  return options;
}

// Loads the module at `path` (with `options`), calls its main and unloads it.
void check_loads(const std::string& path, relib::load_options options = {}) {
  auto loaded = relib::load_module(path, relib::no_imports{}, options);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded.has_value());
  CHECK(loaded->call_main<int>().value() == 7);
  CHECK(loaded->unload().has_value());
}

// The reason the policy refuses `path`, checked to name the opt-out last; the opt-out loads it.
std::string refusal_of(const std::string& path) {
  auto loaded = relib::load_module(path);
  REQUIRE_FALSE(loaded);
  INFO(loaded.error().message);
  CHECK(loaded.error().code == relib::load_errc::untrusted_file);
  CHECK(loaded.error().module == path);
  const std::string opt_out = ". To load it anyway, set load_options::require_trusted_file = false";
  CHECK(loaded.error().reason.size() > opt_out.size());
  CHECK(loaded.error().reason.compare(loaded.error().reason.size() - opt_out.size(), opt_out.size(), opt_out) == 0);
  check_loads(path, trusting_anything());
  return loaded.error().reason;
}

// The user's private group: the primary group, named after the user, with no other member.
bool has_private_group(uid_t user, gid_t& group) {
  const passwd* account = ::getpwuid(user);
  if (account == nullptr) return false;
  const std::string name = account->pw_name;
  group = account->pw_gid;
  const struct group* entry = ::getgrgid(group);
  if (entry == nullptr || name != entry->gr_name) return false;
  for (char** member = entry->gr_mem; *member != nullptr; ++member) {
    if (name != *member) return false;
  }
  return true;
}

// A group this process may give its files that is not the user's private group: for root any
// group (one with members if there is one, else "users", "staff", "nogroup"), for another user
// one of its supplementary groups.
bool shared_group(gid_t& group) {
  const gid_t primary = ::getegid();
  if (is_root()) {
    ::setgrent();
    while (const struct group* entry = ::getgrent()) {
      if (entry->gr_gid != primary && entry->gr_mem[0] != nullptr && std::string(entry->gr_mem[0]) != "root") {
        group = entry->gr_gid;
        ::endgrent();
        return true;
      }
    }
    ::endgrent();
    for (const char* name : {"users", "staff", "nogroup"}) {
      const struct group* entry = ::getgrnam(name);
      if (entry != nullptr && entry->gr_gid != primary) {
        group = entry->gr_gid;
        return true;
      }
    }
    group = 54321;  // in no database: not anyone's private group either
    return true;
  }
  gid_t groups[256];
  const int count = ::getgroups(256, groups);
  for (int i = 0; i < count; ++i) {
    if (groups[i] != primary) {
      group = groups[i];
      return true;
    }
  }
  return false;
}

// How a load went in a child process that became `user` (and its group) before loading.
struct child_load {
  bool loaded = false;
  std::string code, reason;  // when it was not
};

child_load load_as(uid_t user, const std::string& path) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::string report;
    if (::setgroups(0, nullptr) != 0 || ::setresgid(user, user, user) != 0 || ::setresuid(user, user, user) != 0) {
      report = "setup\nthe child cannot become uid " + std::to_string(user);
    } else {
      auto loaded = relib::load_module(path);
      if (!loaded) {
        report = std::string(relib::to_string(loaded.error().code)) + "\n" + loaded.error().reason;
      } else {
        auto main = loaded->call_main<int>();
        report = main && *main == 7 ? "loaded" : "main\nmain did not return 7";
      }
    }
    for (std::size_t written = 0; written < report.size();) {
      const ssize_t n = ::write(pipe_fds[1], report.data() + written, report.size() - written);
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string report;
  char buffer[1024];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) report.append(buffer, static_cast<std::size_t>(got));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  child_load outcome;
  outcome.loaded = report == "loaded";
  const std::size_t newline = report.find('\n');
  outcome.code = report.substr(0, newline);
  if (newline != std::string::npos) outcome.reason = report.substr(newline + 1);
  return outcome;
}

// Every directory from `directory` up to / is root's and writable by no one else.
bool only_root_can_write_above(std::string directory) {
  for (;;) {
    struct stat info {};
    if (::stat(directory.c_str(), &info) != 0 || info.st_uid != 0 || (info.st_mode & 022) != 0) return false;
    if (directory == "/") return true;
    const std::size_t slash = directory.rfind('/');
    directory = slash == 0 ? "/" : directory.substr(0, slash);
  }
}

}  // namespace

TEST_CASE("trust: the build tree that holds the test modules is trusted", "[trust]") {
  // If this fails, every test that loads a module fails: the reason says which directory to fix.
  check_loads(TEST_WITH_MAIN_PATH);
}

TEST_CASE("trust: a module file owned by another user is refused, naming it and the chown that fixes it", "[trust]") {
  if (!is_root()) {
    WARN("not root: a file of another user cannot be made (CI runs this as root); skipped");
    return;
  }
  test::temp_dir dir;
  const std::string file = module_at(dir.path() + "/libtheirs.so");
  set_owner(file, nobody, nobody);
  const std::string reason = refusal_of(file);
  CHECK(test::contains(reason, "'" + file + "' is owned by uid 65534"));
  CHECK(test::contains(reason, "; run: chown root '" + file + "'"));
}

TEST_CASE("trust: a module file writable by everyone is refused, naming it and the chmod that fixes it", "[trust]") {
  test::temp_dir dir;
  const std::string file = module_at(dir.path() + "/libopen.so", 0666);
  const std::string reason = refusal_of(file);
  CHECK(test::contains(reason, "'" + file + "' is writable by everyone; run: chmod o-w '" + file + "'"));
}

TEST_CASE("trust: a module file in a directory everyone can write is refused, naming the directory", "[trust]") {
  test::temp_dir dir;
  const std::string open_directory = make_directory(dir.path() + "/shared", 0777);
  const std::string file = module_at(open_directory + "/libmodule.so");
  const std::string reason = refusal_of(file);
  CHECK(test::contains(reason, "'" + open_directory + "' is writable by everyone; run: chmod o-w '" + open_directory + "'"));
  CHECK_FALSE(test::contains(reason, "libmodule.so"));
}

TEST_CASE("trust: a sticky directory everyone can write, like /tmp, holds the user's own module", "[trust]") {
  test::temp_dir dir;
  const std::string sticky = make_directory(dir.path() + "/tmp", 01777);
  check_loads(module_at(sticky + "/libmine.so"));
}

TEST_CASE("trust: a path with a quote is quoted for the shell in the command that fixes it", "[trust]") {
  test::temp_dir dir;
  const std::string file = module_at(dir.path() + "/it's.so", 0666);
  const std::string quoted = "'" + real_path(dir.path()) + "/it'\\''s.so'";
  CHECK(test::contains(refusal_of(file), "run: chmod o-w " + quoted));
}

TEST_CASE("trust: a module file and directory writable by the owner's private group load", "[trust]") {
  gid_t group = 0;
  if (!has_private_group(::geteuid(), group)) {
    WARN("this user's primary group is not a private group (named after the user, no other members); skipped");
    return;
  }
  test::temp_dir dir;
  const std::string directory = make_directory(dir.path() + "/group", 0775);
  const std::string file = module_at(directory + "/libgroup.so", 0664);
  set_owner(directory, static_cast<uid_t>(-1), group);
  set_owner(file, static_cast<uid_t>(-1), group);
  check_loads(file);
}

TEST_CASE("trust: a module file or directory writable by a group shared with others is refused", "[trust]") {
  gid_t group = 0;
  if (!shared_group(group)) {
    WARN("not root, and in no group but the primary one: no shared group to give a file (CI runs this as root); skipped");
    return;
  }
  const std::string fix = "; run: chmod g-w '";
  test::temp_dir dir;
  SECTION("the file") {
    const std::string file = module_at(dir.path() + "/libgroup.so", 0664);
    set_owner(file, static_cast<uid_t>(-1), group);
    const std::string reason = refusal_of(file);
    CHECK(test::contains(reason, "'" + file + "' is writable by group "));
    CHECK(test::contains(reason, "(gid " + std::to_string(group) + "), which "));
    CHECK(test::contains(reason, fix + file + "'"));
  }
  SECTION("a directory above it") {
    const std::string directory = make_directory(dir.path() + "/group", 0775);
    set_owner(directory, static_cast<uid_t>(-1), group);
    const std::string reason = refusal_of(module_at(directory + "/libgroup.so"));
    CHECK(test::contains(reason, "'" + directory + "' is writable by group "));
    CHECK(test::contains(reason, fix + directory + "'"));
  }
}

TEST_CASE("trust: another user loads root's module from root's directories, and not a third user's", "[trust]") {
  if (!is_root()) {
    WARN("not root: the child cannot become another user (CI runs this as root); skipped");
    return;
  }
  SECTION("root's module in root's directories") {
    // Next to the test modules: /tmp would not do, its sticky bit protects only the user's own files.
    const std::string build_directory = real_path(std::filesystem::path(TEST_WITH_MAIN_PATH).parent_path().string());
    if (!only_root_can_write_above(build_directory)) {
      WARN("the build tree is not root's alone, so it is not trusted by another user; skipped");
      return;
    }
    std::string pattern = build_directory + "/trust-XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    const std::string directory = pattern;
    struct removal {
      std::string path;
      ~removal() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
      }
    } remove_directory{directory};
    set_mode(directory, 0755);
    const std::string file = module_at(directory + "/libroot.so");
    const child_load child = load_as(nobody, file);
    INFO(child.code << ": " << child.reason);
    CHECK(child.loaded);
  }
  SECTION("in the user's own directory under a sticky /tmp") {
    test::temp_dir dir;  // private to the child
    set_owner(dir.path(), nobody, nobody);
    const std::string own = module_at(dir.path() + "/libown.so");
    set_owner(own, nobody, nobody);
    const child_load loaded = load_as(nobody, own);
    if (loaded.code == "file_not_found") {
      WARN("uid 65534 cannot reach the temporary directory " << dir.path() << ": " << loaded.reason << "; skipped");
      return;
    }
    INFO(loaded.code << ": " << loaded.reason);
    CHECK(loaded.loaded);

    const std::string theirs = module_at(dir.path() + "/libtheirs.so");
    set_owner(theirs, stranger, stranger);
    const child_load refused = load_as(nobody, theirs);
    CHECK(refused.code == "untrusted_file");
    CHECK(test::contains(refused.reason, "'" + theirs + "' is owned by uid 65533"));
    CHECK(test::contains(refused.reason, "not by this process's user (" + user_name(nobody) + ") or root"));
    CHECK(test::contains(refused.reason, "; run: chown " + user_name(nobody) + " '" + theirs + "'"));

    // A sticky directory protects a file from everyone but its owner: root's file is not the user's.
    const std::string parent = real_path(std::filesystem::path(dir.path()).parent_path().string());
    struct stat info {};
    REQUIRE(::stat(parent.c_str(), &info) == 0);
    if ((info.st_mode & S_ISVTX) != 0 && (info.st_mode & S_IWOTH) != 0) {
      const std::string roots = module_at(dir.path() + "/libroot.so");
      const child_load sticky = load_as(nobody, roots);
      CHECK(sticky.code == "untrusted_file");
      CHECK(test::contains(sticky.reason, "'" + parent + "' is writable by everyone, and its sticky bit protects only"));
      CHECK(test::contains(sticky.reason, "run: chown " + user_name(nobody) + " '" + roots + "'"));
    }
  }
}

TEST_CASE("trust: a live module checks the watched file at each load", "[trust][live]") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  std::filesystem::copy_file(TEST_LIVE_V1_PATH, target);
  set_mode(target, 0666);
  SECTION("refused at the first load, loaded with the opt-out") {
    auto refused = relib::load_live_module<live_exports>(target, relib::no_imports{}, test::quick_options());
    REQUIRE_FALSE(refused);
    INFO(refused.error().message);
    CHECK(refused.error().code == relib::reload_errc::load_failed);
    REQUIRE(refused.error().load);
    CHECK(refused.error().load->code == relib::load_errc::untrusted_file);
    CHECK(refused.error().load->module == target);
    CHECK(test::contains(refused.error().reason, "is writable by everyone; run: chmod o-w '" + real_path(target) + "'"));
    CHECK(test::contains(refused.error().reason, "set live_options::require_trusted_file = false"));

    relib::live_options options = test::quick_options();
    options.require_trusted_file = false;
    auto loaded = relib::load_live_module<live_exports>(target, relib::no_imports{}, options);
    INFO((loaded ? std::string() : loaded.error().message));
    REQUIRE(loaded);
    CHECK(test::version_of(*loaded) == 1);
  }
  SECTION("a new build writable by everyone is refused and the running version stays") {
    set_mode(target, 0644);
    auto loaded = relib::load_live_module<live_exports>(target, relib::no_imports{}, test::quick_options());
    INFO((loaded ? std::string() : loaded.error().message));
    REQUIRE(loaded);
    test::live module = std::move(*loaded);
    const std::string staged = dir.path() + "/staged.so";
    std::filesystem::copy_file(TEST_LIVE_V2_PATH, staged);
    set_mode(staged, 0666);
    std::filesystem::rename(staged, target);
    auto reloaded = test::next_update(module);
    REQUIRE_FALSE(reloaded);
    CHECK(reloaded.error().code == relib::reload_errc::load_failed);
    REQUIRE(reloaded.error().load);
    CHECK(reloaded.error().load->code == relib::load_errc::untrusted_file);
    CHECK(reloaded.error().running_version == 1);
    CHECK(test::version_of(module) == 1);
  }
}
