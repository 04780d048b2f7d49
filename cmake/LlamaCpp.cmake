# llama.cpp for the tests' client and the side-by-side benchmark: the prebuilt libllama/libggml of the
# npm package @node-llama-cpp/linux-x64 (npm install --omit=optional --ignore-scripts --prefix
# tests/oracle; .ci/run does it) and the headers of the matching source, a git bundle inside
# node-llama-cpp, cloned into the build tree (headers must match the libraries: parameter structs
# pass by value). Sets LLMQ_LLAMACPP_FOUND, LLMQ_LLAMACPP_BINS and LLMQ_LLAMACPP_SRC.
set(LLMQ_LLAMACPP_FOUND OFF)
set(LLMQ_LLAMACPP_BINS "${PROJECT_SOURCE_DIR}/tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64")
set(LLMQ_LLAMACPP_BUNDLE "${PROJECT_SOURCE_DIR}/tests/oracle/node_modules/node-llama-cpp/llama/gitRelease.bundle")
if(EXISTS "${LLMQ_LLAMACPP_BINS}/libllama.v0.5.0.so" AND EXISTS "${LLMQ_LLAMACPP_BUNDLE}")
  set(LLMQ_LLAMACPP_SRC "${PROJECT_BINARY_DIR}/llama.cpp-src")
  if(NOT EXISTS "${LLMQ_LLAMACPP_SRC}/include/llama.h")
    find_package(Git REQUIRED)
    execute_process(COMMAND ${GIT_EXECUTABLE} -c advice.detachedHead=false clone --quiet "${LLMQ_LLAMACPP_BUNDLE}"
                            "${LLMQ_LLAMACPP_SRC}" RESULT_VARIABLE llamacpp_clone)
    if(NOT llamacpp_clone EQUAL 0)
      message(FATAL_ERROR "cloning ${LLMQ_LLAMACPP_BUNDLE} failed")
    endif()
  endif()
  set(LLMQ_LLAMACPP_FOUND ON)
endif()
