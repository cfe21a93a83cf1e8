# `cmake --install` and `make package` install what was built and do not
# build first: the package test runs them while other tests run the
# tree's programs, which a rebuild must not replace under their feet.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

# `cmake --install` and `make package`: the public headers, the libraries, the
# `courier` CLI, courier_proto_library() and a CMake package (courierConfig
# .cmake) whose targets are courier::<component>, plus courier.pc for
# pkg-config; CPack turns the same install rules into a Debian package.
#
# Only what a user links is exported. courier_internal (warnings, sanitizer
# flags) is linked as $<BUILD_INTERFACE:...> and so never leaves the build;
# courier_cert and the test support libraries have no install rule.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(COURIER_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/courier")

# Exported targets, dependencies before their users (the order of courier.pc's
# -l flags, which static linking needs).
set(courier_exported_targets
  courier_deploy courier_config courier_gateway courier_gateway_proto
  courier_grpc_services_proto
  courier_actors courier_transports courier_pipe courier_tcp courier_grpc_tier
  courier_shm courier_stream courier_runtime courier_proto)

foreach(target IN LISTS courier_exported_targets)
  # courier_runtime is exported as courier::runtime, the alias users of the
  # build tree already write.
  string(REGEX REPLACE "^courier_" "" export_name "${target}")
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  # Each component's include/ holds its public headers and nothing else.
  get_target_property(source_dir ${target} SOURCE_DIR)
  if(EXISTS "${source_dir}/include")
    install(DIRECTORY "${source_dir}/include/"
            DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
endforeach()

install(TARGETS ${courier_exported_targets}
  EXPORT courier-targets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT courier-targets
  NAMESPACE courier::
  FILE courierTargets.cmake
  DESTINATION "${COURIER_CMAKE_DIR}")

install(TARGETS courier RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

# `cmake --install --strip` (and CPack, CPACK_STRIP_FILES) strips the CLI but
# leaves static libraries alone; their debug information is most of their
# size (hundreds of MB in RelWithDebInfo), so strip it from them too.
foreach(target IN LISTS courier_exported_targets)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "STATIC_LIBRARY")
    set(archive "${CMAKE_INSTALL_LIBDIR}/$<TARGET_FILE_NAME:${target}>")
    install(CODE "
      if(CMAKE_INSTALL_DO_STRIP)
        execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug
                        \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${archive}\")
      endif()")
  endif()
endforeach()

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/courierConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/courierConfig.cmake"
  INSTALL_DESTINATION "${COURIER_CMAKE_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/courierConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/courierConfig.cmake"
  "${PROJECT_BINARY_DIR}/courierConfigVersion.cmake"
  "${CMAKE_CURRENT_LIST_DIR}/CourierProto.cmake"
  # Debian's libcaf-dev ships no CMake package: the exported targets name
  # CAF::core, which this module defines.
  "${CMAKE_CURRENT_LIST_DIR}/FindCAF.cmake"
  DESTINATION "${COURIER_CMAKE_DIR}")

# courier.pc finds its prefix from its own place, so an installed tree can be
# moved (and the tests use one in a temporary folder).
file(RELATIVE_PATH COURIER_PC_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" COURIER_PC_PREFIX "${COURIER_PC_PREFIX}")
set(COURIER_PC_LIBS "")
foreach(target IN LISTS courier_exported_targets)
  get_target_property(type ${target} TYPE)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    string(APPEND COURIER_PC_LIBS " -l${target}")
  endif()
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/courier.pc.in"
               "${PROJECT_BINARY_DIR}/courier.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/courier.pc"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")

# The Debian package (`make package`, or `cpack -G DEB` in the build folder).
# "courier" alone would read as Debian's Courier mail server (courier-base,
# courier-mta, ...), hence courier-actors. One package holds the CLI and what
# a C++ project needs to build against Courier, so it depends on the -dev
# packages of everything the installed headers and static libraries use;
# dpkg-shlibdeps adds the shared libraries the CLI runs with.
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "courier-actors")
set(CPACK_PACKAGE_VENDOR "Courier")
set(CPACK_PACKAGE_CONTACT "Courier maintainers <courier@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Courier: named actors exchanging Protocol Buffers messages")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libcaf-dev (>= 0.17), libprotobuf-dev (>= 3.21), protobuf-compiler, \
libboost-dev (>= 1.74), libssl-dev (>= 3), nlohmann-json3-dev, \
libtomlplusplus-dev (>= 3), libgrpc++-dev (>= 1.51), pkg-config")
include(CPack)
