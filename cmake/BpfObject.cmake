# Build helpers for the eBPF side: the kernel's types (vmlinux.h, from its BTF), a BPF object per
# *.bpf.c (clang -target bpf) and a libbpf skeleton header per object (bpftool gen skeleton).
# Everything is generated at build time so the programs always match the build machine's kernel;
# CO-RE relocations then adapt them to the kernel they are loaded on.

set(V2P_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH "Kernel BTF that vmlinux.h is generated from")
if(NOT EXISTS "${V2P_VMLINUX_BTF}")
  message(FATAL_ERROR
    "pfilter: ${V2P_VMLINUX_BTF} is missing, so vmlinux.h cannot be generated. Build on a kernel "
    "with CONFIG_DEBUG_INFO_BTF=y, or pass -DV2P_VMLINUX_BTF=<path to a vmlinux or BTF file>.")
endif()

find_program(V2P_BPF_CLANG NAMES clang clang-14 clang-15 clang-16 REQUIRED)
find_program(V2P_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# Same mapping as the kernel's ARCH → SRCARCH, for the __TARGET_ARCH_* macro bpf_tracing.h needs.
string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _v2p_arch)
if(_v2p_arch MATCHES "x86_64|amd64")
  set(V2P_BPF_ARCH x86)
elseif(_v2p_arch MATCHES "aarch64|arm64")
  set(V2P_BPF_ARCH arm64)
else()
  set(V2P_BPF_ARCH ${_v2p_arch})
endif()

set(V2P_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen CACHE INTERNAL "")
file(MAKE_DIRECTORY ${V2P_BPF_GEN_DIR})

# One vmlinux.h for the whole build.
if(NOT TARGET v2p_vmlinux_h)
  add_custom_command(
    OUTPUT ${V2P_BPF_GEN_DIR}/vmlinux.h
    COMMAND ${V2P_BPFTOOL} btf dump file ${V2P_VMLINUX_BTF} format c > ${V2P_BPF_GEN_DIR}/vmlinux.h.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${V2P_BPF_GEN_DIR}/vmlinux.h.tmp ${V2P_BPF_GEN_DIR}/vmlinux.h
    COMMENT "Generating vmlinux.h from ${V2P_VMLINUX_BTF}"
    VERBATIM)
  add_custom_target(v2p_vmlinux_h DEPENDS ${V2P_BPF_GEN_DIR}/vmlinux.h)
endif()

# v2p_bpf_skeleton(<name> SOURCE <file.bpf.c> [DEPENDS headers…])
# Produces ${V2P_BPF_GEN_DIR}/<name>.bpf.o and <name>.skel.h, and a target <name>_skel to depend on.
function(v2p_bpf_skeleton name)
  cmake_parse_arguments(ARG "" "SOURCE" "DEPENDS" ${ARGN})
  get_filename_component(src ${ARG_SOURCE} ABSOLUTE)
  get_filename_component(src_dir ${src} DIRECTORY)
  set(obj ${V2P_BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${V2P_BPF_GEN_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${V2P_BPF_CLANG} -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_${V2P_BPF_ARCH}
            -I${V2P_BPF_GEN_DIR} -I${src_dir} -I${PROJECT_SOURCE_DIR}/include
            -c ${src} -o ${obj}
    DEPENDS ${src} ${ARG_DEPENDS} ${V2P_BPF_GEN_DIR}/vmlinux.h
    COMMENT "Compiling BPF object ${name}.bpf.o"
    VERBATIM)
  # The skeleton embeds the object; its name prefixes the generated C API (<name>_bpf__open…).
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${V2P_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "Generating BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel DEPENDS ${skel})
endfunction()
