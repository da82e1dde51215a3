// V8 embedding for the plugin host: platform, isolates, and WebAssembly instantiation through a
// small JavaScript snippet in each context (the V8 10.2 in libnode has no C++ API to instantiate).
#include "v8_host.h"

#include <libplatform/libplatform.h>
#include <v8.h>

#include <cstring>

namespace hostfit::v8host {
namespace {

std::unique_ptr<v8::Platform>& platform() {
  static std::unique_ptr<v8::Platform> p;
  return p;
}

v8::ArrayBuffer::Allocator* allocator() {
  static v8::ArrayBuffer::Allocator* a = v8::ArrayBuffer::Allocator::NewDefaultAllocator();
  return a;
}

// Instantiates the module bound to `plugin` and exposes its exports as `exports`.
constexpr char kInstantiate[] =
    "const exports = new WebAssembly.Instance(new WebAssembly.Module(plugin), {}).exports;"
    "if (typeof exports.on_request !== 'function' || !(exports.memory instanceof "
    "WebAssembly.Memory)) throw new Error('the module must export memory and on_request');"
    "exports;";

// A host that keeps per-request state in JavaScript: the request head parsed into a Map of its
// headers, the last `keep` of them held.
constexpr char kRecord[] =
    "const kept = []; let seen = 0;"
    "(function record(head, keep) {"
    "  const headers = new Map();"
    "  for (const line of head.split('\\r\\n')) {"
    "    const colon = line.indexOf(':');"
    "    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + "
    "1).trim());"
    "  }"
    "  headers.set(':request', ++seen);"
    "  if (keep > 0) { kept.push(headers); if (kept.length > keep) kept.shift(); }"
    "  return headers.size;"
    "})";

std::string exception_text(v8::Isolate* isolate, const v8::TryCatch& try_catch) {
  if (!try_catch.HasCaught()) return "unknown error";
  v8::String::Utf8Value text(isolate, try_catch.Exception());
  return *text ? *text : "unprintable exception";
}

}  // namespace

V8Runtime::V8Runtime(const char* argv0) {
  v8::V8::InitializeICUDefaultLocation(argv0);
  v8::V8::InitializeExternalStartupData(argv0);
  platform() = v8::platform::NewDefaultPlatform();
  v8::V8::InitializePlatform(platform().get());
  // As Node.js and other production embedders do: out-of-bounds Wasm accesses are caught by a
  // signal handler, so each 32-bit memory gets V8's full guard region (10 GiB in V8 10.2) instead
  // of explicit bounds checks. This is what makes a memory cost address space and mappings.
  v8::V8::EnableWebAssemblyTrapHandler(/*use_v8_signal_handler=*/true);
  v8::V8::Initialize();
}

// V8 is left up: plugin threads may still be unwinding, and the process ends right after.
V8Runtime::~V8Runtime() = default;

std::string V8Runtime::version() {
  return v8::V8::GetVersion();
}

struct PluginInstance::State {
  v8::Isolate* isolate = nullptr;
  v8::Global<v8::Context> context;
  v8::Global<v8::Function> on_request;
  v8::Global<v8::Object> memory;
  v8::Global<v8::Function> record;  // set when the host keeps state in JavaScript
  int js_state = -1;
  bool ok = false;
};

PluginInstance::PluginInstance(std::span<const uint8_t> module, std::string& error, int js_state)
    : state_(std::make_unique<State>()) {
  state_->js_state = js_state;
  v8::Isolate::CreateParams params;
  params.array_buffer_allocator = allocator();
  state_->isolate = v8::Isolate::New(params);
  v8::Isolate* isolate = state_->isolate;
  v8::Isolate::Scope isolate_scope(isolate);
  v8::HandleScope handles(isolate);
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  v8::Context::Scope context_scope(context);
  state_->context.Reset(isolate, context);

  auto bytes = v8::ArrayBuffer::New(isolate, module.size());
  std::memcpy(bytes->GetBackingStore()->Data(), module.data(), module.size());
  v8::TryCatch try_catch(isolate);
  auto name = v8::String::NewFromUtf8Literal(isolate, "plugin");
  if (!context->Global()->Set(context, name, bytes).FromMaybe(false)) {
    error = "cannot bind the module bytes: " + exception_text(isolate, try_catch);
    return;
  }
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> result;
  if (!v8::Script::Compile(context, v8::String::NewFromUtf8Literal(isolate, kInstantiate))
           .ToLocal(&script) ||
      !script->Run(context).ToLocal(&result) || !result->IsObject()) {
    error = exception_text(isolate, try_catch);
    return;
  }
  auto exports = result.As<v8::Object>();
  v8::Local<v8::Value> fn, memory;
  if (!exports->Get(context, v8::String::NewFromUtf8Literal(isolate, "on_request")).ToLocal(&fn) ||
      !exports->Get(context, v8::String::NewFromUtf8Literal(isolate, "memory")).ToLocal(&memory)) {
    error = exception_text(isolate, try_catch);
    return;
  }
  state_->on_request.Reset(isolate, fn.As<v8::Function>());
  state_->memory.Reset(isolate, memory.As<v8::Object>());
  if (js_state >= 0) {
    v8::Local<v8::Value> record;
    if (!v8::Script::Compile(context, v8::String::NewFromUtf8Literal(isolate, kRecord))
             .ToLocal(&script) ||
        !script->Run(context).ToLocal(&record) || !record->IsFunction()) {
      error = exception_text(isolate, try_catch);
      return;
    }
    state_->record.Reset(isolate, record.As<v8::Function>());
  }
  state_->ok = true;
}

PluginInstance::~PluginInstance() {
  if (!state_ || !state_->isolate) return;
  state_->on_request.Reset();
  state_->memory.Reset();
  state_->record.Reset();
  state_->context.Reset();
  state_->isolate->Dispose();
}

bool PluginInstance::ok() const {
  return state_->ok;
}

int32_t PluginInstance::on_request(std::span<const uint8_t> request) {
  // The request goes after the plugin's own state at offset 0; 4 pages leave room for 200 KiB.
  constexpr uint32_t kRequestOffset = 1024;
  if (!state_->ok) return -1;
  v8::Isolate* isolate = state_->isolate;
  v8::Isolate::Scope isolate_scope(isolate);
  v8::HandleScope handles(isolate);
  v8::Local<v8::Context> context = state_->context.Get(isolate);
  v8::Context::Scope context_scope(context);
  v8::TryCatch try_catch(isolate);

  v8::Local<v8::Value> buffer;
  if (!state_->memory.Get(isolate)
           ->Get(context, v8::String::NewFromUtf8Literal(isolate, "buffer"))
           .ToLocal(&buffer) ||
      !buffer->IsArrayBuffer()) {
    return -1;
  }
  auto store = buffer.As<v8::ArrayBuffer>()->GetBackingStore();
  const size_t len = std::min<size_t>(request.size(), store->ByteLength() - kRequestOffset);
  std::memcpy(static_cast<uint8_t*>(store->Data()) + kRequestOffset, request.data(), len);
  v8::Local<v8::Value> args[] = {v8::Integer::NewFromUnsigned(isolate, kRequestOffset),
                                 v8::Integer::NewFromUnsigned(isolate, static_cast<uint32_t>(len))};
  v8::Local<v8::Value> result;
  if (state_->js_state >= 0) {
    v8::Local<v8::String> head;
    if (!v8::String::NewFromOneByte(isolate, request.data(), v8::NewStringType::kNormal,
                                    static_cast<int>(len))
             .ToLocal(&head))
      return -1;
    v8::Local<v8::Value> record_args[] = {head, v8::Integer::New(isolate, state_->js_state)};
    if (!state_->record.Get(isolate)
             ->Call(context, context->Global(), 2, record_args)
             .ToLocal(&result))
      return -1;
  }
  if (!state_->on_request.Get(isolate)->Call(context, context->Global(), 2, args).ToLocal(&result))
    return -1;
  return result->Int32Value(context).FromMaybe(-1);
}

}  // namespace hostfit::v8host
