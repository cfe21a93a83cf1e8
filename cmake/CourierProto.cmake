# courier_proto_library(<target> IMPORT_DIR <dir> PROTOS <file>... [DEPS <t>...])
#
# Generates C++ from .proto files (paths relative to IMPORT_DIR, which must be
# the calling CMakeLists.txt's folder: protobuf_generate names its outputs
# relative to it) into the build
# tree and wraps the result in a static library that exposes the generated
# headers. Generated code is compiled without Courier's warning flags: it is
# not ours to fix.
function(courier_proto_library target)
  cmake_parse_arguments(arg "" "IMPORT_DIR" "PROTOS;DEPS" ${ARGN})
  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/${target}_gen")
  file(MAKE_DIRECTORY "${out_dir}")
  set(import_dirs "${arg_IMPORT_DIR}")
  foreach(dep IN LISTS arg_DEPS)
    get_target_property(dep_dirs ${dep} COURIER_PROTO_IMPORT_DIRS)
    list(APPEND import_dirs ${dep_dirs})
  endforeach()
  set(proto_files "")
  foreach(proto IN LISTS arg_PROTOS)
    list(APPEND proto_files "${arg_IMPORT_DIR}/${proto}")
  endforeach()
  add_library(${target} STATIC ${proto_files})
  protobuf_generate(TARGET ${target} LANGUAGE cpp
                    IMPORT_DIRS ${import_dirs}
                    PROTOC_OUT_DIR "${out_dir}")
  target_include_directories(${target} PUBLIC "$<BUILD_INTERFACE:${out_dir}>")
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf ${arg_DEPS})
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    COURIER_PROTO_IMPORT_DIRS "${import_dirs}")
  if(COURIER_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
