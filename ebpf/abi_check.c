/*
 * Compiles every ABI header with the host compiler so their _Static_asserts are checked by
 * gcc as well as by clang -target bpf. Produces no code.
 */
#include "ebpf/headers/tapio_config.h"
#include "ebpf/headers/network.h"
#include "ebpf/headers/container.h"
#include "ebpf/headers/storage.h"
#include "ebpf/headers/node.h"

TAPIO_STATIC_ASSERT(sizeof(struct tapio_config) % 8 == 0, "tapio_config 8-byte multiple");
