// A corpus of hostile inputs, one table row each (corpus() below): how the file or path is made,
// the exact load_errc it must give, and a word its reason must name. The damaged modules are
// copies of built test modules with their ELF header, program headers, dynamic section,
// relocations or notes edited; relib must refuse each before dlopen(), since the dynamic loader
// crashes on several of them. So each input is loaded in a forked child that reports the outcome
// through its exit status: a signal or a hang fails that row, not the test run, and every input
// must get its answer within two seconds. One row runs alone with -c '<its name>'.
//
// Some rows repeat tests kept elsewhere, so that the whole corpus reads in one place:
// test_load_errors.cpp (a missing file, a directory, an empty file, truncated copies, another
// machine, a plain C library), test_hostile_files.cpp (a note segment of 2 GiB) and
// test_one_file.cpp (a bare name is the file in the working directory, never a search).
#include "support.hpp"

#include "elf_image.hpp"

#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <optional>

namespace {

using errc = relib::load_errc;
using test::elf_image;
const std::optional<errc> loads;  // a row whose input must load

constexpr ElfW(Addr) far_away = ElfW(Addr){1} << 30;  // 1 GiB: past the end of every test module's image
constexpr std::uint64_t two_gib = std::uint64_t{2} << 30;
constexpr auto answer_within = std::chrono::seconds(2);

#if __ELF_NATIVE_CLASS == 64
#define TEST_R_SYM ELF64_R_SYM
#define TEST_R_TYPE ELF64_R_TYPE
#define TEST_R_INFO ELF64_R_INFO
#else
#define TEST_R_SYM ELF32_R_SYM
#define TEST_R_TYPE ELF32_R_TYPE
#define TEST_R_INFO ELF32_R_INFO
#endif

// ---- Inputs ---------------------------------------------------------------------------------------

// What to load: a path, and what the child does first (returns what failed, or "").
struct target {
  std::string path;
  std::function<std::string()> before_load;
  target(std::string path, std::function<std::string()> before_load = {})
      : path(std::move(path)), before_load(std::move(before_load)) {}
};

using maker = std::function<target(const test::temp_dir&)>;

maker written(std::string contents) {
  return [contents](const test::temp_dir& dir) -> target { return dir.write_file("input.so", contents); };
}

maker copied(const char* file) {
  return [file](const test::temp_dir& dir) -> target { return dir.copy_file(file, "input.so"); };
}

maker patched(const char* module, std::function<void(elf_image&)> edit) {
  return [module, edit](const test::temp_dir& dir) -> target {
    elf_image elf(module);
    edit(elf);
    return dir.write_file("input.so", elf.encoded());
  };
}

// The first bytes of a module, as many as `where` says.
maker cut(const char* module, std::function<std::uint64_t(const elf_image&)> where) {
  return [module, where](const test::temp_dir& dir) -> target {
    const elf_image elf(module);
    return dir.write_file("input.so", elf.bytes.substr(0, where(elf)));
  };
}
std::function<std::uint64_t(const elf_image&)> bytes(std::uint64_t count) {
  return [count](const elf_image&) { return count; };
}

// What `make` makes, extended with holes to `size` bytes: a sparse file.
maker with_holes(maker make, std::uint64_t size) {
  return [make, size](const test::temp_dir& dir) {
    target made = make(dir);
    REQUIRE(::truncate(made.path.c_str(), static_cast<off_t>(size)) == 0);
    return made;
  };
}

void replace_once(std::string& bytes, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  const std::size_t at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
}

std::string make_directory(const std::string& path) {
  REQUIRE(::mkdir(path.c_str(), 0700) == 0);
  return path;
}

// In the child (its working directory is its own: the test's stays as it was).
std::string change_directory(const std::string& path) {
  return ::chdir(path.c_str()) == 0 ? "" : "chdir: " + std::string(std::strerror(errno));
}

// In the child: root opens any file whatever its mode, so become nobody first.
std::string drop_privileges() {
  if (::geteuid() != 0) return "";
  const gid_t nobody_group = 65534;
  const uid_t nobody = 65534;
  if (::setgroups(0, nullptr) != 0 || ::setresgid(nobody_group, nobody_group, nobody_group) != 0 ||
      ::setresuid(nobody, nobody, nobody) != 0) {
    return "cannot drop privileges: " + std::string(std::strerror(errno));
  }
  return "";
}

// ---- The corpus -----------------------------------------------------------------------------------

struct hostile_case {
  const char* name;
  maker make;
  std::optional<errc> expected;  // `loads`: the input must load
  const char* word;              // the reason names it (or one of its '|' alternatives); "" for no check
};

std::vector<hostile_case> corpus() {
  const char* const minimal = TEST_MINIMAL_PATH;
  return {
    {"control: an untouched copy of a module", copied(minimal), loads, ""},

    // ---- Not ELF, or cut short
    {"an empty file", written(""), errc::not_elf, "empty"},
    {"cut after 1 byte", cut(minimal, bytes(1)), errc::not_elf, ""},
    {"cut after 3 bytes", cut(minimal, bytes(3)), errc::not_elf, ""},
    {"cut after 4 bytes", cut(minimal, bytes(4)), errc::damaged_file, "truncated"},
    {"cut after 17 bytes", cut(minimal, bytes(17)), errc::damaged_file, "truncated"},
    {"cut after 63 bytes", cut(minimal, bytes(63)), errc::damaged_file, "truncated"},
    {"cut after 64 bytes", cut(minimal, bytes(64)), errc::damaged_file, "truncated"},
    {"cut after 100 bytes", cut(minimal, bytes(100)), errc::damaged_file, "truncated"},
    {"cut one byte into the program headers",
     cut(minimal, [](const elf_image& elf) { return elf.header.e_phoff + 1; }), errc::damaged_file, "truncated"},
    {"cut in the middle of the program headers",
     cut(minimal, [](const elf_image& elf) { return (elf.header.e_phoff + elf.program_headers_end()) / 2; }),
     errc::damaged_file, "truncated"},
    {"cut at the end of the program headers", cut(minimal, [](const elf_image& elf) { return elf.program_headers_end(); }),
     errc::damaged_file, "truncated"},
    {"cut in half", cut(minimal, [](const elf_image& elf) { return elf.bytes.size() / 2; }), errc::damaged_file,
     "truncated"},
    {"cut one byte short", cut(minimal, [](const elf_image& elf) { return elf.bytes.size() - 1; }), errc::damaged_file,
     "truncated"},

    // ---- The ELF header
    {"ELFCLASS32 in e_ident", patched(minimal, [](elf_image& elf) { elf.header.e_ident[EI_CLASS] = ELFCLASS32; }),
     errc::wrong_architecture, "32-bit"},
    {"the other byte order in e_ident", patched(minimal, [](elf_image& elf) {
       elf.header.e_ident[EI_DATA] = elf.header.e_ident[EI_DATA] == ELFDATA2LSB ? ELFDATA2MSB : ELFDATA2LSB;
     }),
     errc::wrong_architecture, "endian"},
    {"another machine in e_machine", patched(minimal, [](elf_image& elf) {
       elf.header.e_machine = elf.header.e_machine == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
     }),
     errc::wrong_architecture, "machine"},
    {"ET_EXEC in e_type", patched(minimal, [](elf_image& elf) { elf.header.e_type = ET_EXEC; }),
     errc::not_shared_library, "executable"},
    {"a position-independent executable (ET_DYN)", copied(TEST_PROGRAM_PATH), errc::not_shared_library, "executable"},
    {"e_phoff past the end of the file",
     patched(minimal, [](elf_image& elf) { elf.header.e_phoff = elf.bytes.size() + 64; }), errc::damaged_file, "e_phoff"},
    {"e_phoff so large that the table's end wraps",
     patched(minimal, [](elf_image& elf) { elf.header.e_phoff = ~ElfW(Off){0} - 63; }), errc::damaged_file, "e_phoff"},
    {"e_phnum 0", patched(minimal, [](elf_image& elf) { elf.header.e_phnum = 0; }), errc::damaged_file, "e_phnum"},
    {"e_phnum 0xffff", patched(minimal, [](elf_image& elf) { elf.header.e_phnum = 0xffff; }), errc::damaged_file,
     "e_phnum"},

    // ---- Segments
    {"overlapping PT_LOADs (the second moved onto the first's pages)", patched(minimal, [](elf_image& elf) {
       ElfW(Phdr)& second = elf.load(1);
       second.p_vaddr = second.p_paddr = elf.load(0).p_vaddr + second.p_vaddr % second.p_align;
     }),
     errc::damaged_file, "PT_LOAD"},
    {"unsorted PT_LOADs (two swapped)", patched(minimal, [](elf_image& elf) { std::swap(elf.load(1), elf.load(2)); }),
     errc::damaged_file, "PT_LOAD"},
    {"p_filesz > p_memsz in a PT_LOAD", patched(minimal, [](elf_image& elf) {
       elf.last_load().p_filesz = elf.last_load().p_memsz + 0x1000;
     }),
     errc::damaged_file, "PT_LOAD"},
    {"a PT_LOAD whose p_offset + p_filesz wraps", patched(minimal, [](elf_image& elf) {
       ElfW(Phdr)& code = elf.load(1);
       code.p_offset = ~ElfW(Off){0} - (code.p_align - 1) + code.p_offset % code.p_align;
     }),
     errc::damaged_file, "PT_LOAD"},
    {"PT_DYNAMIC far past the last PT_LOAD", patched(minimal, [](elf_image& elf) {
       elf.segment(PT_DYNAMIC).p_vaddr = elf.segment(PT_DYNAMIC).p_paddr = far_away;
     }),
     errc::damaged_file, "PT_DYNAMIC"},
    {"PT_TLS outside every PT_LOAD, with an initial image to copy from there", patched(minimal, [](elf_image& elf) {
       ElfW(Phdr)& tls = elf.segment(PT_TLS);
       tls.p_vaddr = tls.p_paddr = far_away;
       tls.p_filesz = tls.p_memsz;
     }),
     errc::damaged_file, "PT_TLS"},
    {"PT_GNU_RELRO outside every PT_LOAD", patched(minimal, [](elf_image& elf) {
       elf.segment(PT_GNU_RELRO).p_vaddr = elf.segment(PT_GNU_RELRO).p_paddr = far_away;
     }),
     errc::damaged_file, "PT_GNU_RELRO"},
    {"PT_GNU_STACK asking for an executable stack",
     patched(minimal, [](elf_image& elf) { elf.segment(PT_GNU_STACK).p_flags |= PF_X; }), errc::damaged_file, "stack"},

    // ---- Notes and relib's records
    {"a PT_NOTE of 2 GiB (sparse)", with_holes(patched(minimal, [](elf_image& elf) {
       elf.segment(PT_NOTE).p_filesz = elf.segment(PT_NOTE).p_memsz = two_gib;
     }), two_gib + 4096),  // the notes start in the first page: the file holds all 2 GiB of them
     errc::damaged_file, "note"},
    {"a note whose n_descsz runs past its segment", patched(minimal, [](elf_image& elf) {
       const std::uint64_t at = elf.note_with("module\trelib\t");
       const ElfW(Phdr)& notes = elf.segment(PT_NOTE);
       ElfW(Nhdr) note = elf.read<ElfW(Nhdr)>(at);
       note.n_descsz = static_cast<ElfW(Word)>(notes.p_offset + notes.p_filesz - at + 4);
       elf.write(at, note);
     }),
     errc::damaged_file, "note"},
    {"the module record twice (a second PT_NOTE over the same notes)",
     patched(minimal, [](elf_image& elf) { elf.segment(PT_GNU_EH_FRAME) = elf.segment(PT_NOTE); }),
     errc::not_a_relib_module, "twice|duplicate"},
    {"two export records with the same name", patched(TEST_LEAK_PATH, [](elf_image& elf) {
       replace_once(elf.bytes, "export\tgetline_length\t", "export\tuse_libc_state\t");
     }),
     errc::not_a_relib_module, "twice|duplicate"},

    // ---- The dynamic section and relocations
    {"DT_RELAENT 32 instead of 24", patched(minimal, [](elf_image& elf) { elf.entry(DT_RELAENT).d_un.d_val = 32; }),
     errc::damaged_file, "DT_RELAENT"},
    {"DT_STRTAB outside the image",
     patched(minimal, [](elf_image& elf) { elf.entry(DT_STRTAB).d_un.d_ptr = far_away; }), errc::damaged_file, "DT_STRTAB"},
    // Packed relative relocations (relib_add_module links with -z pack-relative-relocs): glibc reads
    // DT_RELRENT without looking whether it is there.
    {"DT_RELR without DT_RELRENT (its tag turned into an unknown one)", patched(minimal, [](elf_image& elf) {
       elf.entry(37 /* DT_RELRENT */).d_tag = 0x74000025;
     }),
     errc::damaged_file, "DT_RELRENT is missing"},
    {"DT_RELRENT 4 instead of 8", patched(minimal, [](elf_image& elf) { elf.entry(37 /* DT_RELRENT */).d_un.d_val = 4; }),
     errc::damaged_file, "DT_RELRENT is 4"},
    {"DT_SYMENT 16 instead of 24", patched(minimal, [](elf_image& elf) { elf.entry(DT_SYMENT).d_un.d_val = 16; }),
     errc::damaged_file, "DT_SYMENT"},
    {"DT_STRSZ of 1 TiB", patched(minimal, [](elf_image& elf) {
       elf.entry(DT_STRSZ).d_un.d_val = ElfW(Xword){1} << 40;
     }),
     errc::damaged_file, "DT_STRSZ"},
    // 1 GiB: glibc 2.36 counts the entries in 32 bits, so 1 TiB would run none of them and load.
    {"DT_INIT_ARRAYSZ of 1 GiB", patched(minimal, [](elf_image& elf) {
       elf.entry(DT_INIT_ARRAYSZ).d_un.d_val = ElfW(Xword){1} << 30;
     }),
     errc::damaged_file, "DT_INIT_ARRAY"},
    {"a relocation writing into the read-only ELF header", patched(minimal, [](elf_image& elf) {
       const std::uint64_t at = elf.relocations().front();
       ElfW(Rela) relocation = elf.read<ElfW(Rela)>(at);
       relocation.r_offset = 0x10;
       elf.write(at, relocation);
     }),
     errc::damaged_file, "relocation"},
    {"a relocation whose symbol index is past the symbol table", patched(minimal, [](elf_image& elf) {
       for (const std::uint64_t at : elf.relocations()) {
         ElfW(Rela) relocation = elf.read<ElfW(Rela)>(at);
         if (TEST_R_SYM(relocation.r_info) == 0) continue;
         relocation.r_info = TEST_R_INFO(0xfffff0, TEST_R_TYPE(relocation.r_info));
         elf.write(at, relocation);
         return;
       }
       FAIL("no relocation names a symbol");
     }),
     errc::damaged_file, "symbol"},

    // ---- Whole files
    // Its dynamic section, like everything after the first page, reads as zeros.
    {"2 GiB of holes after a module's first page", with_holes(cut(minimal, bytes(4096)), two_gib), errc::damaged_file,
     "PT_DYNAMIC|DT_|dynamic"},
    {"a plain C shared library", copied(TEST_PLAIN_C_PATH), errc::not_a_relib_module, "records"},

    // ---- Paths that are not regular files, or cannot be opened
    {"a directory", [](const test::temp_dir& dir) -> target { return dir.path(); }, errc::not_a_file, "directory"},
    {"a FIFO with no writer", [](const test::temp_dir& dir) -> target {
       const std::string path = dir.path() + "/input.fifo";
       REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
       return path;
     },
     errc::not_a_file, "not a regular file"},
    {"/dev/zero", [](const test::temp_dir&) -> target { return std::string("/dev/zero"); }, errc::not_a_file,
     "not a regular file"},
    {"a symlink loop", [](const test::temp_dir& dir) -> target {
       REQUIRE(::symlink("loop-b", (dir.path() + "/loop-a").c_str()) == 0);
       REQUIRE(::symlink("loop-a", (dir.path() + "/loop-b").c_str()) == 0);
       return dir.path() + "/loop-a";
     },
     errc::file_not_found, "symbolic links"},
    {"a path longer than PATH_MAX", [](const test::temp_dir& dir) -> target {
       std::string path = dir.path();
       while (path.size() <= PATH_MAX) path += "/" + std::string(200, 'd');
       return path + "/input.so";
     },
     errc::file_not_found, "too long"},
    {"a file that does not exist", [](const test::temp_dir& dir) -> target { return dir.path() + "/nothing-here.so"; },
     errc::file_not_found, "no such file"},
    {"a file of mode 000, loaded by an unprivileged user", [](const test::temp_dir& dir) -> target {
       const std::string path = dir.copy_file(TEST_MINIMAL_PATH, "input.so");
       REQUIRE(::chmod(path.c_str(), 0) == 0);
       REQUIRE(::chmod(dir.path().c_str(), 0711) == 0);  // the unprivileged child may pass through
       return {path, drop_privileges};
     },
     errc::file_not_found, "Permission denied"},

    // ---- Bare names: a file in the working directory, never a search
    {"a bare name of a file in the working directory", [](const test::temp_dir& dir) -> target {
       const std::string here = make_directory(dir.path() + "/here");
       std::filesystem::copy_file(TEST_MINIMAL_PATH, here + "/libbare.so");
       return {"libbare.so", [here] { return change_directory(here); }};
     },
     loads, ""},
    // The dynamic loader read LD_LIBRARY_PATH at startup; relib's own code would see this value.
    {"a bare name of a file only in a directory on LD_LIBRARY_PATH", [](const test::temp_dir& dir) -> target {
       const std::string here = make_directory(dir.path() + "/here");
       const std::string library_directory = make_directory(dir.path() + "/lib");
       std::filesystem::copy_file(TEST_MINIMAL_PATH, library_directory + "/libon_search_path.so");
       return {"libon_search_path.so", [here, library_directory] {
                 ::setenv("LD_LIBRARY_PATH", library_directory.c_str(), 1);
                 return change_directory(here);
               }};
     },
     errc::file_not_found, "no such file"},
    {"a bare name the dynamic loader would find (libc.so.6)", [](const test::temp_dir& dir) -> target {
       const std::string here = dir.path();
       return {"libc.so.6", [here] { return change_directory(here); }};
     },
     errc::file_not_found, "no such file"},
  };
}

// ---- Loading in a child -----------------------------------------------------------------------------

// The child's exit status: loaded, or refused with 100 + the code.
constexpr int setup_failed_status = 98, loaded_status = 99, refused_status = 100;
#define TEST_COUNT_CODE(code, explanation) +1
constexpr int load_error_count = 0 RELIB_LOAD_ERRORS(TEST_COUNT_CODE);
#undef TEST_COUNT_CODE

struct outcome {
  enum class kind { refused, loaded, signalled, exited, hung };
  kind what = kind::hung;
  errc code{};
  int number = 0;      // the signal, or the exit status
  std::string reason;  // the refusal's reason, or what failed in the child before the load
  std::string errors;  // what the child wrote to stderr (the dynamic loader's complaints)
};

void write_all(int descriptor, const std::string& text) {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t wrote = ::write(descriptor, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return;
    done += static_cast<std::size_t>(wrote);
  }
}

[[noreturn]] void load_and_exit(const target& input, int report, int errors) {
  for (int signal : {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTRAP}) ::signal(signal, SIG_DFL);  // not Catch's
  ::dup2(errors, STDERR_FILENO);
  int status = setup_failed_status;
  std::string text;
  try {
    text = input.before_load ? input.before_load() : "";
    if (text.empty()) {
      auto loaded = relib::load_module(input.path);
      status = loaded ? loaded_status : refused_status + static_cast<int>(loaded.error().code);
      if (!loaded) text = loaded.error().reason;
    }
  } catch (const std::exception& error) {
    status = setup_failed_status;
    text = std::string("threw: ") + error.what();
  }
  write_all(report, text);
  ::_exit(status);
}

outcome load_in_child(const target& input) {
  int report[2], errors[2];
  REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(errors, O_CLOEXEC) == 0);
  const auto deadline = std::chrono::steady_clock::now() + answer_within;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(report[0]);
    ::close(errors[0]);
    load_and_exit(input, report[1], errors[1]);
  }
  ::close(report[1]);
  ::close(errors[1]);

  outcome got;
  std::string* into[2] = {&got.reason, &got.errors};
  pollfd watched[2] = {{report[0], POLLIN, 0}, {errors[0], POLLIN, 0}};
  int open = 2;
  while (open > 0) {  // until the child closes both pipes (it exited) or the deadline
    using std::chrono::milliseconds;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    const int ready = ::poll(watched, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (watched[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t got_bytes = ::read(watched[i].fd, buffer, sizeof buffer);
      if (got_bytes > 0) {
        into[i]->append(buffer, static_cast<std::size_t>(got_bytes));
      } else if (got_bytes == 0 || errno != EINTR) {
        watched[i].fd = -1;
        --open;
      }
    }
  }
  const bool hung = open > 0;
  if (hung) ::kill(child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(report[0]);
  ::close(errors[0]);

  const int exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (hung) {
    got.what = outcome::kind::hung;
  } else if (WIFSIGNALED(status)) {
    got.what = outcome::kind::signalled;
    got.number = WTERMSIG(status);
  } else if (exit_status == loaded_status) {
    got.what = outcome::kind::loaded;
  } else if (exit_status >= refused_status && exit_status < refused_status + load_error_count) {
    got.what = outcome::kind::refused;
    got.code = static_cast<errc>(exit_status - refused_status);
  } else {
    got.what = outcome::kind::exited;
    got.number = exit_status;
  }
  return got;
}

// ---- Judging ---------------------------------------------------------------------------------------

bool names_one_of(const std::string& reason, const std::string& words) {
  std::size_t start = 0;
  for (;;) {
    const std::size_t bar = words.find('|', start);
    if (test::contains(reason, words.substr(start, bar - start))) return true;
    if (bar == std::string::npos) return false;
    start = bar + 1;
  }
}

bool as_expected(const hostile_case& row, const outcome& got) {
  if (!row.expected) return got.what == outcome::kind::loaded;
  return got.what == outcome::kind::refused && got.code == *row.expected &&
         (*row.word == '\0' || names_one_of(got.reason, row.word));
}

std::string describe_expected(const hostile_case& row) {
  if (!row.expected) return "loads";
  std::string text = relib::to_string(*row.expected);
  if (*row.word != '\0') text += ", the reason naming '" + std::string(row.word) + "'";
  return text;
}

std::string describe(const outcome& got) {
  switch (got.what) {
    case outcome::kind::refused: return std::string(relib::to_string(got.code)) + ": " + got.reason;
    case outcome::kind::loaded: return "loaded";
    case outcome::kind::signalled:
      return std::string("killed by SIG") + ::sigabbrev_np(got.number) + " (" + ::strsignal(got.number) + ")";
    case outcome::kind::exited: return "exited with status " + std::to_string(got.number) + " " + got.reason;
    case outcome::kind::hung: break;
  }
  return "no answer within 2 s (killed)";
}

}  // namespace

TEST_CASE("hostile corpus: each input gives its exact load error, in a child that survives it", "[hostile][corpus]") {
  for (const hostile_case& row : corpus()) {
    DYNAMIC_SECTION(row.name) {
      test::temp_dir dir;
      const outcome got = load_in_child(row.make(dir));
      INFO("expected: " << describe_expected(row) << "\ngot:      " << describe(got)
                        << (got.errors.empty() ? "" : "\nthe child's stderr: " + got.errors));
      CHECK(as_expected(row, got));
    }
  }
}
