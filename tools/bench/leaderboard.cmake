# The CAQ leaderboard (spec/leaderboard.md): alcm-bench, its sample codec plugins, and the
# `bench-bundles` and `leaderboard` targets. Included by tools/bench/CMakeLists.txt:
#
#   include(${CMAKE_CURRENT_LIST_DIR}/leaderboard.cmake)
#
# Assumes the top level's alcm_cli (tools/cli.c + alcm_static) and the pkg-config imported
# targets PkgConfig::ZSTD, PkgConfig::ZLIB and PkgConfig::SODIUM.

set(ALCM_LB_DIR ${CMAKE_CURRENT_LIST_DIR})

file(GLOB ALCM_LB_SOURCES CONFIGURE_DEPENDS ${ALCM_LB_DIR}/bench_*.c)
add_executable(alcm-bench ${ALCM_LB_DIR}/alcm_bench.c ${ALCM_LB_SOURCES})
target_link_libraries(alcm-bench PRIVATE alcm_cli PkgConfig::ZSTD PkgConfig::ZLIB
  PkgConfig::SODIUM ${CMAKE_DL_LIBS} m)
target_include_directories(alcm-bench PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/tools)
# The manifest is read from the source tree, so that editing it needs no rebuild, and
# make_bundles.sh leaves a copy beside the bundles for a bench that runs elsewhere.
target_compile_definitions(alcm-bench PRIVATE _GNU_SOURCE
  ALCM_BENCH_MANIFEST="${ALCM_LB_DIR}/bundles/manifest.txt")
# Bundle generators use only +, *, / and sqrt so that their bytes are the same on every
# IEEE-754 machine; a fused multiply-add would change them (the top level sets this for
# everything too; it is repeated here because the manifest depends on it).
target_compile_options(alcm-bench PRIVATE -ffp-contract=off)

# Codec plugins, built as the outside world would build them: only include/alcm_codec.h,
# no alcm library. Output: ${CMAKE_LIBRARY_OUTPUT_DIRECTORY}/alcm_codec_<name>.so.
add_library(alcm_codec_bshuf_zlib MODULE ${ALCM_LB_DIR}/plugins/bshuf_zlib.c)
target_link_libraries(alcm_codec_bshuf_zlib PRIVATE PkgConfig::ZLIB)
# The worked example of the interface (bench_stored.c, built into alcm-bench as "stored")
# built as a plugin too, so that the tests prove it is one.
add_library(alcm_codec_stored MODULE ${ALCM_LB_DIR}/bench_stored.c)
target_compile_definitions(alcm_codec_stored PRIVATE BENCH_STORED_AS_PLUGIN)
foreach(plugin alcm_codec_bshuf_zlib alcm_codec_stored)
  target_include_directories(${plugin} PRIVATE ${PROJECT_SOURCE_DIR}/include)
  set_target_properties(${plugin} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden)
endforeach()
# Built with the bench, so that tests/cli_bench.sh finds them.
add_dependencies(alcm-bench alcm_codec_bshuf_zlib alcm_codec_stored)

# cmake --build build --target bench-bundles   makes and checks build/bundles/*
# cmake --build build --target leaderboard     a full run: build/leaderboard.{md,json,csv,svg}
add_custom_target(bench-bundles
  COMMAND ${ALCM_LB_DIR}/bundles/make_bundles.sh --bin $<TARGET_FILE_DIR:alcm-bench>
          --out ${PROJECT_BINARY_DIR}/bundles
  DEPENDS alcm-bench alcm-make-checkpoint
  COMMENT "Making the alcm-bench bundles"
  USES_TERMINAL VERBATIM)
add_custom_target(leaderboard
  COMMAND ${ALCM_LB_DIR}/bundles/make_bundles.sh --bin $<TARGET_FILE_DIR:alcm-bench>
          --out ${PROJECT_BINARY_DIR}/bundles
  COMMAND sh -c "\"$0\" --bundle-dir \"$1\" --plugin \"$2\" -f --json \"$3.json\" --csv \"$3.csv\" --svg \"$3.svg\" > \"$3.md\" && cat \"$3.md\""
          $<TARGET_FILE:alcm-bench> ${PROJECT_BINARY_DIR}/bundles
          $<TARGET_FILE:alcm_codec_bshuf_zlib> ${PROJECT_BINARY_DIR}/leaderboard
  DEPENDS alcm-bench alcm-make-checkpoint alcm_codec_bshuf_zlib
  COMMENT "Running the alcm-bench leaderboard (a few minutes)"
  USES_TERMINAL VERBATIM)
