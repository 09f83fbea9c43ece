/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fixed-width types for the ABI headers, shared verbatim by BPF programs (which include
 * vmlinux.h first) and by userspace (Linux or not, so common/ stays portable).
 */
#ifndef TAPIO_TYPES_H
#define TAPIO_TYPES_H

#if defined(__VMLINUX_H__)
/* BPF side: __u8 … __u64 come from vmlinux.h. */
#elif defined(__linux__)
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef int32_t __s32;
typedef uint64_t __u64;
typedef int64_t __s64;
#endif

#if defined(__cplusplus)
#define TAPIO_STATIC_ASSERT static_assert
#else
#define TAPIO_STATIC_ASSERT _Static_assert
#endif

#ifndef TAPIO_OFFSETOF
#define TAPIO_OFFSETOF(type, member) __builtin_offsetof(type, member)
#endif

#define TAPIO_COMM_LEN 16

#endif
