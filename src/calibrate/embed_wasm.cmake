# cmake -DINPUT=plugin.wasm -DOUTPUT=plugin_wasm.cc -P embed_wasm.cmake: the module's bytes as a
# C++ array, so the binaries that hold the plugin need no file at run time.
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by embed_wasm.cmake.\n"
  "#include \"v8_host.h\"\n"
  "namespace hostfit::v8host {\n"
  "namespace { constexpr uint8_t kPlugin[] = {${bytes}}; }\n"
  "std::span<const uint8_t> builtin_plugin() { return kPlugin; }\n"
  "}  // namespace hostfit::v8host\n")
