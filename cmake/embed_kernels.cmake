# Writes OUT: a C++ table of every WGSL file in FILES, keyed by its base name.
set(body "// Generated from src/kernels/*.wgsl by cmake/embed_kernels.cmake. Do not edit.\n")
string(APPEND body "#include \"kernels/kernel_sources.hpp\"\n\nnamespace wgllm::kernels {\n\n")
string(APPEND body "const std::vector<KernelSource>& all_sources() {\n  static const std::vector<KernelSource> table = {\n")
string(REPLACE "|" ";" FILES "${FILES}")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} text)
  # A raw string literal with a delimiter WGSL never contains.
  string(APPEND body "      {\"${name}\", R\"wgsl_src(${text})wgsl_src\"},\n")
endforeach()
string(APPEND body "  };\n  return table;\n}\n\n}  // namespace wgllm::kernels\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
