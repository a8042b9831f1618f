# cuda.cmake — the CUDA backend: kernels (.cu) behind a C header, the cuda backend table, NCCL comm
# (with its peer-memory all-reduce).
# Targets Hopper (sm_90a, for wgmma) and a portable sm_80 build.
file(GLOB SS_CUDA_KERNELS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cu
     ${PROJECT_SOURCE_DIR}/src/comm/*.cu)
file(GLOB SS_CUDA_HOST CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.c
     ${PROJECT_SOURCE_DIR}/src/comm/comm_nccl.c ${PROJECT_SOURCE_DIR}/src/comm/peer_allreduce.c)
if(NOT SS_CUDA_KERNELS)
  message(STATUS "CUDA backend: no kernels yet")
  return()
endif()
# The attention's split policy is host C called by the kernels' launchers: it links with them.
set(SS_CUDA_POLICY ${PROJECT_SOURCE_DIR}/src/backend/cuda/attn_splits.c)
list(REMOVE_ITEM SS_CUDA_HOST ${SS_CUDA_POLICY})
add_library(shardserve_cuda STATIC ${SS_CUDA_KERNELS} ${SS_CUDA_POLICY})
# The directory's C flags (-Wall -Werror -pthread ...) mean nothing to nvcc: replace them.
set_property(TARGET shardserve_cuda PROPERTY COMPILE_OPTIONS "")
target_include_directories(shardserve_cuda PRIVATE ${PROJECT_SOURCE_DIR}/src)
# No -O here: the build type sets the host code's level (a second one made nvcc warn); device code is
# optimised by cicc and ptxas at their defaults (-O3) in every build type.
target_compile_options(shardserve_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80
  --use_fast_math -std=c++17 -Xcompiler=-Wall,-Wextra,-Werror -Werror=all-warnings -D_GNU_SOURCE>
  $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Werror>)
if(SS_CUDA_PTXAS_VERBOSE)
  # Register / spill report of every kernel (scripts/gpu/check.sh turns this on).
  target_compile_options(shardserve_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
endif()
# cuBLASLt is not linked: matmul_lt.c loads it when a cuda backend is created (lt_api.c; its static initialisers
# cost every process ~80 ms at start). Its headers are still the toolkit's.
target_link_libraries(shardserve_cuda PUBLIC CUDA::cudart ${CMAKE_DL_LIBS})

# NCCL: the toolkit's folder, a system install, or SS_NCCL_ROOT (e.g. the nvidia-nccl wheel's folder).
set(SS_NCCL_ROOT "" CACHE PATH "Folder holding include/nccl.h and lib/libnccl.so (optional)")
find_path(SS_NCCL_INCLUDE nccl.h HINTS ${SS_NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
find_library(SS_NCCL_LIB NAMES nccl libnccl.so.2
             HINTS ${SS_NCCL_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)

target_sources(shardserve_lib PRIVATE ${SS_CUDA_HOST})
target_compile_definitions(shardserve_lib PUBLIC SS_HAVE_CUDA=1)
target_include_directories(shardserve_lib PRIVATE ${CUDAToolkit_INCLUDE_DIRS} ${SS_NCCL_INCLUDE})
target_link_libraries(shardserve_lib PUBLIC shardserve_cuda ${SS_NCCL_LIB} CUDA::cudart ${CMAKE_DL_LIBS})
