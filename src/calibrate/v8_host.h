// A small embedding of V8 (Debian's libnode) that holds WebAssembly plugins the way a proxy-wasm
// host does: one isolate per plugin instance, each with its own context, module and instance.
// Used by the calibration helper (hostfit-v8-instances) and by examples/wasmgw.
//
// Threading: V8Runtime is process-wide (create one, first); a PluginInstance belongs to the thread
// that created it and is used only there. When V8 cannot create an isolate or a memory it aborts
// the process with its own fatal error, as every V8 embedder does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace hostfit::v8host {

// Initializes V8 and its platform once per process; V8 stays up until exit.
class V8Runtime {
 public:
  explicit V8Runtime(const char* argv0);
  ~V8Runtime();
  V8Runtime(const V8Runtime&) = delete;
  V8Runtime& operator=(const V8Runtime&) = delete;
  static std::string version();  // "10.2.154.26-node.36"
};

// The plugin module assembled at build time from src/calibrate/plugin.wat.
std::span<const uint8_t> builtin_plugin();

// One isolate with one instance of a module that exports `memory` and `on_request(ptr, len)`.
class PluginInstance {
 public:
  // Creates the isolate and instantiates `module`. A JavaScript or WebAssembly error (an invalid
  // module, a missing export) is returned in `error` with the instance left unusable.
  // `js_state` >= 0 makes the host keep per-request state in JavaScript as well: each request's
  // headers become a JavaScript Map in the isolate, and the last `js_state` of them are kept
  // (0: each is garbage once the request is done). -1: the request only goes to linear memory,
  // as a proxy-wasm host does.
  PluginInstance(std::span<const uint8_t> module, std::string& error, int js_state = -1);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  bool ok() const;
  // Copies `request` into the plugin's memory and calls on_request; the plugin's result (the
  // builtin plugin answers 200..203), or -1 when the call failed.
  int32_t on_request(std::span<const uint8_t> request);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace hostfit::v8host
