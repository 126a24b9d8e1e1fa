# Settings of the browser build (`make web`: emcmake cmake, docs/web.md), included by the root list file in
# place of the native dependencies. Debian's emscripten 3.1.6 compiles the engine's own layers; Dawn, MPI,
# cpp-httplib, libedit and GTest are native-only and not looked for.

# C++ exceptions as WebAssembly exceptions: no JS round trip per try, and no ASYNCIFY anywhere.
add_compile_options(-fwasm-exceptions "SHELL:-include ${CMAKE_SOURCE_DIR}/web/compat/libcxx_compat.hpp")
add_link_options(-fwasm-exceptions)

# nlohmann/json is header-only: the system's copy, seen through a folder that holds nothing else (the
# toolchain must not search the native /usr/include).
find_path(WGLLM_NLOHMANN_DIR nlohmann/json.hpp PATHS /usr/include NO_CMAKE_FIND_ROOT_PATH REQUIRED)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/include)
file(CREATE_LINK ${WGLLM_NLOHMANN_DIR}/nlohmann ${CMAKE_BINARY_DIR}/include/nlohmann SYMBOLIC)
add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
target_include_directories(nlohmann_json::nlohmann_json INTERFACE ${CMAKE_BINARY_DIR}/include)
