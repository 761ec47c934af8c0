/* The libc the generated decoders use, for a freestanding WebAssembly build (no libc, no WASI). */
#ifndef VAE_EDGE_WASM_STRING_H_
#define VAE_EDGE_WASM_STRING_H_
typedef __SIZE_TYPE__ size_t;
#define NULL ((void *)0)
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int value, size_t n);
#endif
