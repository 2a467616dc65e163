// relib-inspect: what a module file holds, and whether it will load and unload, read from the
// file without running any of its code (docs/diagnostics.md).
//
//   relib-inspect [--json] [--host <executable>] <module.so>
//
// Prints the relib version and build the module records, its exports, imports, main and state,
// the trust checks, and what would keep it from unloading. With --host, compares the module with
// the interfaces the host executable was built with (RELIB_HOST_EXPORTS and RELIB_HOST_IMPORTS
// record them) and names every mismatch as a load would. Exit status: 0 when nothing is wrong,
// 1 when something is, 2 when the file is not a relib module or cannot be read.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace {

namespace rd = relib::detail;

struct entry {
  std::string kind, name, signature;
};

struct undefined_symbol {
  std::string name, library;  // library: the DT_NEEDED library that defines it; empty: none found
  bool weak = false;
};

struct inspection {
  std::string file;
  std::string refusal;  // why it is not a module relib can read; empty when it is one
  std::string version, compiler, stdlib, unloading, heaps;
  std::vector<entry> entries;
  std::string state_type;
  std::uint32_t state_version = 0;
  std::vector<std::string> needed, unique_symbols;
  bool no_delete = false, thread_local_storage = false, cxa_thread_atexit = false;
  std::vector<undefined_symbol> undefined;
  std::string untrusted;              // the trust policy's objection; empty: trusted
  std::vector<std::string> problems;  // what keeps it from loading or unloading
  std::string host;                   // --host
  std::string host_interface;         // the host's interface type it was compared with
  std::vector<std::string> host_problems;
};

/* ---- Reading ELF beyond what loading needs ---- */

struct elf_tables {
  std::string dynamic, symbols, symbol_strings;
  bool tls = false;
};

bool read_tables(const rd::platform::readable_file& file, elf_tables& out) {
  const rd::elf_reader reader(file);
  std::vector<rd::platform::elf_section> sections;
  std::string names;
  if (!rd::read_section_headers(reader, sections, names)) return false;
  for (const auto& section : sections) {
    out.tls = out.tls || (section.sh_flags & SHF_TLS) != 0;
    if (section.sh_type == SHT_DYNAMIC) reader.read_section(section, out.dynamic);
    if (section.sh_type == SHT_DYNSYM) reader.read_with_strings(sections, section, out.symbols, out.symbol_strings);
  }
  return true;
}

/* Where the dynamic loader would find a DT_NEEDED library: RUNPATH, then the system's directories. */
std::string find_library(const std::string& name, const std::vector<std::string>& search_paths, const std::string& origin) {
  std::vector<std::string> directories;
  for (const std::string& paths : search_paths) {
    for (std::size_t start = 0; start <= paths.size();) {
      const std::size_t end = std::min(paths.find(':', start), paths.size());
      std::string directory = paths.substr(start, end - start);
      for (const std::string token : {"$ORIGIN", "${ORIGIN}"}) {
        const std::size_t at = directory.find(token);
        if (at != std::string::npos) directory.replace(at, token.size(), origin);
      }
      directories.push_back(directory);
      start = end + 1;
    }
  }
#if defined(__x86_64__)
  const std::string multiarch = "x86_64-linux-gnu";
#elif defined(__aarch64__)
  const std::string multiarch = "aarch64-linux-gnu";
#else
  const std::string multiarch;
#endif
  for (const std::string system : {"/lib/", "/usr/lib/"}) directories.push_back(system + multiarch);
  for (const char* system : {"/lib64", "/usr/lib64", "/lib", "/usr/lib"}) directories.emplace_back(system);
  for (const std::string& directory : directories) {
    rd::platform::readable_file candidate;
    const std::string path = directory + "/" + name;
    if (candidate.open(path) == rd::platform::readable_file::status::opened) return path;
  }
  return "";
}

std::set<std::string> defined_symbols(const std::string& path) {
  std::set<std::string> names;
  rd::platform::readable_file file;
  elf_tables tables;
  if (file.open(path) != rd::platform::readable_file::status::opened || !read_tables(file, tables)) return names;
  rd::for_each_entry<rd::platform::elf_symbol>(tables.symbols, [&](const rd::platform::elf_symbol& symbol) {
    if (symbol.st_shndx != SHN_UNDEF && ELF64_ST_BIND(symbol.st_info) != STB_LOCAL) {
      names.emplace(rd::string_at(tables.symbol_strings, symbol.st_name));
    }
  });
  return names;
}

bool is_sanitizer_symbol(const std::string& name) {
  for (const char* prefix : {"__asan_", "__ubsan_", "__tsan_", "__lsan_", "__msan_", "__hwasan_", "__sanitizer_"}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

/* What would keep the module mapped after dlclose(), or keep dlopen() from loading it. */
void inspect_unloading(const rd::platform::readable_file& file, const rd::image_contents& contents, inspection& out) {
  elf_tables tables;
  if (!read_tables(file, tables)) return;
  out.thread_local_storage = tables.tls;
  rd::for_each_entry<rd::platform::elf_dynamic>(tables.dynamic, [&](const rd::platform::elf_dynamic& entry) {
    if (entry.d_tag == DT_FLAGS_1 && (entry.d_un.d_val & DF_1_NODELETE) != 0) out.no_delete = true;
  });
  std::vector<std::pair<std::string, std::set<std::string>>> providers;
  const std::string origin = rd::platform::directory_of(file.current_path());
  for (const std::string& needed : contents.needed) {
    const std::string path = find_library(needed, contents.search_paths, origin);
    providers.emplace_back(needed, path.empty() ? std::set<std::string>() : defined_symbols(path));
  }
  rd::for_each_entry<rd::platform::elf_symbol>(tables.symbols, [&](const rd::platform::elf_symbol& symbol) {
    const std::string name(rd::string_at(tables.symbol_strings, symbol.st_name));
    if (symbol.st_shndx != SHN_UNDEF || name.empty()) return;
    if (name == "__cxa_thread_atexit_impl") out.cxa_thread_atexit = true;
    undefined_symbol undefined{name, "", ELF64_ST_BIND(symbol.st_info) == STB_WEAK};
    for (const auto& [library, names] : providers) {
      if (names.count(name) != 0) {
        undefined.library = library;
        break;
      }
    }
    // A sanitized module's calls into its sanitizer: clang links that runtime into the host.
    if (undefined.library.empty() && is_sanitizer_symbol(name)) undefined.library = "the host's sanitizer runtime";
    out.undefined.push_back(undefined);
  });
  if (!out.unique_symbols.empty()) {
    out.problems.push_back(std::to_string(out.unique_symbols.size()) +
                           " STB_GNU_UNIQUE symbol(s): glibc never unloads a library that defines one (build it with "
                           "relib_add_module(), or -fno-gnu-unique)");
  }
  for (const std::string& needed : contents.needed) {
    if (needed.rfind("libstdc++.so", 0) == 0 || needed.rfind("libc++.so", 0) == 0) {
      out.problems.push_back("it links the C++ runtime dynamically (" + needed +
                             "): its thread_local destructors and exception state live in the process's copy, out "
                             "of relib's reach at unload (relib_add_module() links it statically)");
    }
  }
  if (out.no_delete) out.problems.push_back("DF_1_NODELETE (linked with -z nodelete): dlclose() never unloads it");
  if (out.cxa_thread_atexit) {
    out.problems.push_back("it registers thread_local destructors with the C library (__cxa_thread_atexit_impl), "
                           "which keeps it loaded until every thread that used them exits");
  }
  for (const undefined_symbol& symbol : out.undefined) {
    if (symbol.library.empty() && !symbol.weak) {
      out.problems.push_back("undefined symbol '" + symbol.name + "' is in none of its DT_NEEDED libraries: dlopen() "
                             "fails unless the process already has it");
    }
  }
}

/* The module against the host's recorded build and interfaces, by the loader's own checks. */
void inspect_host(const std::string& host, const rd::module_records& records, inspection& out) {
  out.host = host;
  rd::platform::readable_file file;
  rd::host_records expected;
  if (file.open(host) != rd::platform::readable_file::status::opened || !rd::read_host_records(file, expected)) {
    out.host_problems.push_back("cannot read it as an ELF file" + (file.error().empty() ? "" : ": " + file.error()));
    return;
  }
  if (expected.build.version.empty()) {
    out.host_problems.push_back("it records no relib build: it was built without relib.hpp's implementation, or "
                                "with relib before 0.2.0");
    return;
  }
  // The exports type the module has most exports of, and the imports type that provides most
  // of the module's imports: together, what a load_module<Exports, Imports> would ask for.
  rd::load_request request;
  std::size_t best_exports = 0, best_imports = 0;
  for (const auto& [interface, declared] : expected.interfaces) {
    std::size_t exports = 0, imports = 0;
    for (const rd::export_binding& e : declared.exports) exports += records.find("export", e.entry.name) != nullptr;
    for (const rd::import_binding& i : declared.imports) imports += records.find("import", i.entry.name) != nullptr;
    if (!declared.exports.empty() && (request.exports.empty() || exports > best_exports)) {
      request.exports = declared.exports, best_exports = exports;
      out.host_interface = std::string(interface);
    }
    if (!declared.imports.empty() && (request.imports.empty() || imports > best_imports)) {
      request.imports = declared.imports, best_imports = imports;
    }
  }
  // As a load: the build first (with the module's own imports, so that only the build counts),
  // then every interface problem, one by one.
  rd::load_request build_only;
  for (const auto& record : records.entries) {
    if (record.kind == "import") build_only.imports.push_back({{record.name, record.signature, record.layout}, nullptr});
  }
  auto built = rd::check_records(out.file, records, build_only, expected.build);
  if (!built) {
    out.host_problems.push_back(std::string(relib::to_string(built.error().code)) + ": " + built.error().reason);
    return;
  }
  rd::interface_problems check;
  rd::compare_interfaces(request, records, check);
  out.host_problems = check.problems;
}

inspection inspect(const std::string& path, const std::string& host) {
  inspection out;
  out.file = path;
  rd::platform::readable_file file;
  if (file.open(path) != rd::platform::readable_file::status::opened) {
    out.refusal = "cannot open it: " + file.error();
    return out;
  }
  rd::image_contents contents;
  std::string detail;
  if (rd::read_image(file, contents, detail, rd::image_unique_symbols | rd::image_needed) != rd::image_status::ok) {
    out.refusal = detail;
    return out;
  }
  const rd::module_records records = rd::parse_records(contents.meta);
  if (!records.has_module_record) {
    out.refusal = "a shared library without relib's records: it was not built with relib_module.hpp";
    return out;
  }
  out.version = records.version, out.compiler = records.compiler, out.stdlib = records.stdlib;
  out.unloading = records.unloading, out.heaps = records.heaps;
  for (const auto& record : records.entries) {
    if (record.kind != "state") out.entries.push_back({std::string(record.kind), std::string(record.name), std::string(record.signature)});
  }
  if (const auto state = rd::parse_state(records)) {
    out.state_type = std::string(state->type);
    out.state_version = state->version;
  }
  out.needed = contents.needed;
  out.unique_symbols = contents.unique_symbols;
  inspect_unloading(file, contents, out);
  out.untrusted = rd::why_untrusted(file, file.current_path(), "load_options::require_trusted_file");
  if (!out.untrusted.empty()) out.problems.push_back("untrusted: " + out.untrusted);
  if (!records.duplicate.empty()) out.problems.push_back("its records give " + records.duplicate + " twice");
  if (!host.empty()) inspect_host(host, records, out);
  return out;
}

/* ---- Output ---- */

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
  return out + "]";
}

std::string json_entries(const inspection& in, const char* kind) {
  std::string out = "[";
  for (const entry& e : in.entries) {
    if (e.kind != kind) continue;
    out += std::string(out.size() > 1 ? ", " : "") + "{\"name\": " + json_string(e.name) +
           ", \"signature\": " + json_string(e.signature) + "}";
  }
  return out + "]";
}

void print_json(const inspection& in) {
  std::string out = "{\n  \"file\": " + json_string(in.file) + ",\n  \"module\": " + (in.refusal.empty() ? "true" : "false");
  if (!in.refusal.empty()) {
    std::printf("%s,\n  \"refusal\": %s\n}\n", out.c_str(), json_string(in.refusal).c_str());
    return;
  }
  out += ",\n  \"relib\": {\"version\": " + json_string(in.version) + ", \"compiler\": " + json_string(in.compiler) +
         ", \"stdlib\": " + json_string(in.stdlib) + ", \"unloading\": " + (in.unloading == "1" ? "true" : "false") +
         ", \"heaps\": " + json_string(in.heaps) + "}";
  out += ",\n  \"exports\": " + json_entries(in, "export") + ",\n  \"imports\": " + json_entries(in, "import");
  std::string main = "null";
  for (const entry& e : in.entries) {
    if (e.kind == "main") main = "{\"signature\": " + json_string(e.signature) + "}";
  }
  out += ",\n  \"main\": " + main + ",\n  \"state\": ";
  out += in.state_type.empty() ? "null"
                               : "{\"type\": " + json_string(in.state_type) + ", \"version\": " + std::to_string(in.state_version) + "}";
  out += ",\n  \"needed\": " + json_list(in.needed) + ",\n  \"unloading\": {\"unique_symbols\": " +
         json_list(in.unique_symbols) + ", \"nodelete\": " + (in.no_delete ? "true" : "false") +
         ", \"thread_local_storage\": " + (in.thread_local_storage ? "true" : "false") +
         ", \"cxa_thread_atexit\": " + (in.cxa_thread_atexit ? "true" : "false") + "},\n  \"undefined\": [";
  for (std::size_t i = 0; i < in.undefined.size(); ++i) {
    const undefined_symbol& symbol = in.undefined[i];
    out += std::string(i ? ",\n    " : "\n    ") + "{\"symbol\": " + json_string(symbol.name) + ", \"library\": " +
           (symbol.library.empty() ? "null" : json_string(symbol.library)) + ", \"weak\": " + (symbol.weak ? "true" : "false") + "}";
  }
  out += std::string(in.undefined.empty() ? "" : "\n  ") + "],\n  \"trusted\": " + (in.untrusted.empty() ? "true" : "false");
  out += ",\n  \"problems\": " + json_list(in.problems);
  if (!in.host.empty()) {
    out += ",\n  \"host\": {\"file\": " + json_string(in.host) + ", \"interface\": " + json_string(in.host_interface) +
           ", \"problems\": " + json_list(in.host_problems) + "}";
  }
  std::printf("%s\n}\n", out.c_str());
}

void print_text(const inspection& in) {
  if (!in.refusal.empty()) {
    std::printf("%s: not a relib module: %s\n", in.file.c_str(), in.refusal.c_str());
    return;
  }
  std::printf("%s: a relib module\n", in.file.c_str());
  std::printf("  built with relib %s, %s, %s; unloading %s; heaps %s\n", in.version.c_str(), in.compiler.c_str(),
              in.stdlib.c_str(), in.unloading == "1" ? "on" : "off (RELIB_NO_UNLOADING)", in.heaps.c_str());
  for (const entry& e : in.entries) {
    const bool named = e.kind == "export" || e.kind == "import";
    std::printf("  %-14s %-22s %s\n", e.kind.c_str(), named ? e.name.c_str() : "", e.signature.c_str());
  }
  if (!in.state_type.empty()) std::printf("  %-14s %-22s version %u\n", "state", in.state_type.c_str(), in.state_version);
  for (const std::string& needed : in.needed) std::printf("  needs          %s\n", needed.c_str());
  std::size_t unresolved = 0;
  for (const undefined_symbol& symbol : in.undefined) unresolved += symbol.library.empty() && !symbol.weak;
  std::printf("  %zu undefined symbols, %zu of them in none of the libraries it needs\n", in.undefined.size(), unresolved);
  std::printf("  trust: %s\n", in.untrusted.empty() ? "trusted (its owner and write permissions)" : in.untrusted.c_str());
  if (in.problems.empty()) std::printf("  nothing keeps it from loading and unloading\n");
  for (const std::string& problem : in.problems) std::printf("  problem: %s\n", problem.c_str());
  if (in.host.empty()) return;
  if (in.host_problems.empty()) std::printf("  host %s: matches (%s)\n", in.host.c_str(), in.host_interface.c_str());
  for (const std::string& problem : in.host_problems) std::printf("  host %s: %s\n", in.host.c_str(), problem.c_str());
}

int usage() {
  std::fprintf(stderr, "usage: relib-inspect [--json] [--host <executable>] <module.so>\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::string host, module;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (arg == "--host" && i + 1 < argc) {
      host = argv[++i];
    } else if (arg.rfind("--", 0) != 0 && module.empty()) {
      module = arg;
    } else {
      return usage();
    }
  }
  if (module.empty()) return usage();
  const inspection found = inspect(module, host);
  json ? print_json(found) : print_text(found);
  if (!found.refusal.empty()) return 2;
  return found.problems.empty() && found.host_problems.empty() ? 0 : 1;
}
