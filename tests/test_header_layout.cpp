// The headers keep the layout their section maps describe: every OS call of relib.hpp in its
// platform section, and each section where the map at the top of the implementation says.
#include "support.hpp"

#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

namespace {

std::vector<std::string> lines_of(const char* path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The code of each line, without comments and string literals (enough for these checks).
std::vector<std::string> code_of(const std::vector<std::string>& lines) {
  std::vector<std::string> code;
  bool in_comment = false;
  for (const std::string& line : lines) {
    std::string text;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (in_comment) {
        if (line.compare(i, 2, "*/") == 0) in_comment = false, ++i;
      } else if (line.compare(i, 2, "/*") == 0) {
        in_comment = true, ++i;
      } else if (line.compare(i, 2, "//") == 0) {
        break;
      } else if (line[i] == '"') {
        for (++i; i < line.size() && line[i] != '"'; ++i) i += line[i] == '\\';
        text += "\"\"";
      } else {
        text += line[i];
      }
    }
    code.push_back(text);
  }
  return code;
}

}  // namespace

TEST_CASE("layout: relib.hpp calls the OS only from its platform section", "[layout]") {
  const std::vector<std::string> lines = lines_of(RELIB_HOST_HEADER);
  const std::vector<std::string> code = code_of(lines);
  REQUIRE(lines.size() > 1000);
  const std::regex os_call(
      R"((^|[^\w:.>])(::)?(dlopen|dlsym|dlclose|dlerror|dlinfo|dladdr|dl_iterate_phdr|pthread_\w+|open|openat|close|read|)"
      R"(write|pread|fstat|lstat|stat|mmap|munmap|mprotect|getrlimit|getauxval|inotify_\w+|eventfd|poll|fcntl|mkdtemp|)"
      R"(unlinkat|unlink|rmdir|realpath|copy_file_range|getenv|syscall|__libc_\w+)\s*\()");
  const std::regex os_name(R"(\b(RTLD_\w+|O_RDONLY|MAP_\w+|PROT_\w+|S_IS\w+|ElfW|pthread_t|pthread_key_t|errno)\b)");
  const std::regex system_header(R"(#\s*include\s*<(dlfcn|elf|fcntl|link|poll|signal|unistd|pthread|sys/\w+)\.h>)");
  bool in_platform = false;
  std::size_t platform_lines = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("/* >>platform", 0) == 0) in_platform = true;
    if (in_platform) {
      ++platform_lines;
      if (lines[i].rfind("}  // namespace platform", 0) == 0) in_platform = false;
      continue;
    }
    INFO("relib.hpp:" << i + 1 << ": " << lines[i]);
    CHECK_FALSE(std::regex_search(code[i], os_call));
    CHECK_FALSE(std::regex_search(code[i], os_name));
    CHECK_FALSE(std::regex_search(code[i], system_header));
  }
  CHECK(platform_lines > 100);
}

TEST_CASE("layout: each header's sections come in the order its section map gives", "[layout]") {
  for (const char* path : {RELIB_HOST_HEADER, RELIB_MODULE_HEADER}) {
    INFO(path);
    const std::vector<std::string> lines = lines_of(path);
    // The map: lines "     >>name   what it holds" after the ">>implementation" banner.
    std::vector<std::string> mapped, banners;
    const std::regex map_entry(R"(^\s+>>([a-z][a-z ]*[a-z])\s{2,}\S)");
    const std::regex banner(R"(^/\* >>([a-z][a-z ]*[a-z]) )");
    bool in_implementation = false;
    for (const std::string& line : lines) {
      std::smatch found;
      if (line.rfind("/* >>implementation", 0) == 0) in_implementation = true;
      if (in_implementation && mapped.size() < 30 && banners.empty() && std::regex_search(line, found, map_entry)) {
        mapped.push_back(found[1]);
      }
      if (in_implementation && std::regex_search(line, found, banner) && found[1] != "implementation") {
        banners.push_back(found[1]);
      }
    }
    CHECK(mapped.size() >= 5);
    // Each mapped section has a banner, in the map's order (a section may have several banners).
    std::size_t at = 0;
    for (const std::string& section : mapped) {
      INFO("section " << section);
      while (at < banners.size() && banners[at] != section) ++at;
      CHECK(at < banners.size());
    }
    for (const std::string& section : banners) {
      INFO("banner " << section);
      CHECK(std::find(mapped.begin(), mapped.end(), section) != mapped.end());
    }
  }
}
