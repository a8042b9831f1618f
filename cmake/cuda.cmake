# cuda.cmake — the CUDA backend: kernels (.cu) behind a C header, the cuda backend table, NCCL comm.
# Targets Hopper (sm_90a, for wgmma) and a portable sm_80 build.
file(GLOB SS_CUDA_KERNELS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cu)
file(GLOB SS_CUDA_HOST CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.c
     ${PROJECT_SOURCE_DIR}/src/comm/comm_nccl.c)
if(NOT SS_CUDA_KERNELS)
  message(STATUS "CUDA backend: no kernels yet")
  return()
endif()
add_library(shardserve_cuda STATIC ${SS_CUDA_KERNELS})
target_include_directories(shardserve_cuda PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_options(shardserve_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80
  -O3 --use_fast_math -std=c++17 -Xcompiler=-Wall>)
target_link_libraries(shardserve_cuda PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
target_sources(shardserve_lib PRIVATE ${SS_CUDA_HOST})
target_compile_definitions(shardserve_lib PUBLIC SS_HAVE_CUDA=1)
target_include_directories(shardserve_lib PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
find_library(SS_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)
target_link_libraries(shardserve_lib PUBLIC shardserve_cuda ${SS_NCCL_LIB} CUDA::cudart)
