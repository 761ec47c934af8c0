/* The kernels of every generated decoder, in the order <model>_decoder.c holds them: the shared integer
 * arithmetic, the inner loops of one instruction set picked at compile time (Helium on the Cortex-M55 unless
 * -DVAE_EDGE_NO_HELIUM, Cortex-M DSP, 128-bit SIMD on x86 and WebAssembly, or portable C with
 * -DVAE_EDGE_PORTABLE), the row kernels.
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers below into every
 * generated <model>_decoder.c, each #include "<file>.h" of this folder replaced by that file's copied lines, and
 * dsp_strided.h's stride blocks written once per pixel stride of the model. Compiled on its own it is the
 * kernel set without stride-specific kernels (which a decoder's model constants would choose):
 *   gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only [-DVAE_EDGE_PORTABLE] -include kernels.h -x c /dev/null
 * (tests/test_c_kernels.py compiles each file of this folder so, for each instruction set).
 * The generated file defines VAE_EDGE_RELAXED_OK (every layer suits conv_row_relaxed) and VAE_EDGE_DENSE_BIAS_T
 * (dense_row.h) before these lines.
 */
#ifndef VAE_EDGE_KERNELS_H_
#define VAE_EDGE_KERNELS_H_
#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <string.h>
#endif
#ifndef VAE_EDGE_RELAXED_OK
#define VAE_EDGE_RELAXED_OK 1
#endif
/* vae-edge: copy begin */

#include "common.h"
#if defined(__ARM_FEATURE_MVE) && !defined(VAE_EDGE_PORTABLE) && !defined(VAE_EDGE_NO_HELIUM)
#include "mve.h"
#elif defined(__ARM_FEATURE_DSP) && !defined(VAE_EDGE_PORTABLE)
#include "dsp.h"
#elif (defined(__SSE2__) || defined(__wasm_simd128__)) && !defined(VAE_EDGE_PORTABLE)
#include "simd.h"
#else
#include "portable.h"
#endif

#if VAE_EDGE_DSP
#include "dsp_strided.h"
#endif

#include "conv_row.h"

#if VAE_EDGE_SIMD128
#include "simd_rows.h"
#endif
#ifndef VAE_EDGE_REQUANTIZE4
#define VAE_EDGE_REQUANTIZE4 0
#endif
#include "dense_row.h"
#if VAE_EDGE_SIMD128 && defined(__wasm_simd128__) && defined(VAE_EDGE_RELAXED_DOT) && VAE_EDGE_RELAXED_OK
#include "wasm_relaxed.h"
#endif /* relaxed */
#ifndef VAE_EDGE_RELAXED
#define VAE_EDGE_RELAXED 0
#endif
/* vae-edge: copy end */
#endif
