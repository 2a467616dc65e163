// What the two live examples need around their frame loop, kept out of their host.cpp so those
// show only how relib is used: the command line, Ctrl-C, a frame's pace, and the unattended mode
// of the demo and the tests (run an edit-and-rebuild command in the background, stop soon after
// the reload, fail if none comes).
#pragma once

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

namespace example {

class live_driver {
 public:
  // Arguments: [module.so] [--edit "<command>"] [--reloads N]
  live_driver(int argc, char** argv, std::string default_module) : module_(std::move(default_module)) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--edit" && i + 1 < argc) {
        edit_ = argv[++i];
      } else if (arg == "--reloads" && i + 1 < argc) {
        reloads_wanted_ = std::atol(argv[++i]);
      } else {
        module_ = arg;
      }
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line, also into the demo script's pipe
    // Ctrl-C ends the loop rather than the process: the live module then removes its copies.
    std::signal(SIGINT, [](int) { interrupted() = 1; });
  }

  const std::string& module() const { return module_; }
  long frame() const { return frame_; }
  bool running() const { return interrupted() == 0 && exit_code_ < 0; }
  int exit_code() const { return exit_code_ < 0 ? 0 : exit_code_; }

  // Call at the end of each frame with whether update() swapped a new build in.
  void end_frame(bool reloaded) {
    if (reloaded) {
      ++reloads_;
      reloaded_at_ = frame_;
    }
    if (frame_ == 20 && !edit_.empty()) {
      std::printf("[host] editing and rebuilding the module in the background\n");
      editing_ = std::async(std::launch::async, [this] { return std::system(edit_.c_str()); });
    }
    if (editing_.valid() && editing_.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
        editing_.get() != 0) {
      return fail("the edit command failed: " + edit_);
    }
    if (reloads_wanted_ > 0 && reloads_ >= reloads_wanted_ && frame_ >= reloaded_at_ + 20) exit_code_ = 0;
    if (reloads_wanted_ > 0 && std::chrono::steady_clock::now() > give_up_) return fail("no reload within two minutes");
    ++frame_;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

 private:
  static volatile std::sig_atomic_t& interrupted() {
    static volatile std::sig_atomic_t flag = 0;
    return flag;
  }
  void fail(const std::string& why) {
    std::fprintf(stderr, "[host] %s\n", why.c_str());
    exit_code_ = 1;
  }

  std::string module_, edit_;
  long reloads_wanted_ = 0;  // 0: run until Ctrl-C
  long frame_ = 1, reloads_ = 0, reloaded_at_ = 0;
  int exit_code_ = -1;  // set when the run is over
  std::future<int> editing_;  // the edit command's exit status, once it is done
  const std::chrono::steady_clock::time_point give_up_ = std::chrono::steady_clock::now() + std::chrono::minutes(2);
};

}  // namespace example
