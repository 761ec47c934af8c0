/* Draw digits from a vae-edge decoder on a microcontroller and print them as ASCII art.
 *
 * z = L eps with eps ~ N(0, I) (xorshift32 + Box-Muller) and L the prior's Cholesky factor from the generated
 * header, then digit_sample(): latent quantization, the int8 decoder, the pixel table. Build and run it on
 * QEMU's Cortex-M4 board (mps2-an386), from the repository root:
 *
 *   python -m firmware_sim.codegen artifacts/vae2d_corr/export --name digit --out build/digit
 *   arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -std=c99 \
 *     --specs=rdimon.specs -nostartfiles -T firmware_sim/mcu/mps2_an386.ld -Ibuild/digit \
 *     firmware_sim/mcu/startup.c firmware_sim/examples/main.c build/digit/digit_decoder.c -lm -o build/digit/digit.elf
 *   qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel build/digit/digit.elf
 *
 * On a real board keep main.c and digit_decoder.{h,c}; replace startup.c, the linker script and printf with the
 * board's own. -DDIGITS=n draws n digits, -DSEED=s changes them. The same file builds on a PC:
 *   gcc -std=c99 -O2 -Ibuild/digit firmware_sim/examples/main.c build/digit/digit_decoder.c -lm -o digit
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "digit_decoder.h"

#ifndef DIGITS
#define DIGITS 3
#endif
#ifndef SEED
#define SEED 2024u
#endif

static uint32_t rng_state = SEED;

static uint32_t xorshift32(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

/* A uniform float in (0, 1]: never 0, so the logarithm below stays finite. */
static float uniform(void) { return (float)((xorshift32() >> 8) + 1u) * (1.0f / 16777216.0f); }

/* Box-Muller: two uniforms -> one standard normal (the second one is not kept, for simplicity). */
static float normal(void) {
  const float u1 = uniform(), u2 = uniform();
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

static void print_digit(const uint8_t pixels[DIGIT_PIXELS]) {
  static const char shades[] = " .:-=+*#%@";
  int row, col;
  for (row = 0; row < DIGIT_IMAGE_ROWS; ++row) {
    char line[DIGIT_IMAGE_COLS + 1];
    for (col = 0; col < DIGIT_IMAGE_COLS; ++col) line[col] = shades[pixels[row * DIGIT_IMAGE_COLS + col] * 9 / 255];
    line[DIGIT_IMAGE_COLS] = '\0';
    printf("%s\n", line);
  }
}

int main(void) {
  static uint8_t pixels[DIGIT_PIXELS];
  float eps[DIGIT_LATENT_DIM], z[DIGIT_LATENT_DIM];
  int n, i, j;
  for (n = 0; n < DIGITS; ++n) {
    for (i = 0; i < DIGIT_LATENT_DIM; ++i) eps[i] = normal();
    for (i = 0; i < DIGIT_LATENT_DIM; ++i) { /* z = L eps, L lower-triangular, row-major */
      z[i] = 0.0f;
      for (j = 0; j <= i; ++j) z[i] += digit_prior_cholesky[i * DIGIT_LATENT_DIM + j] * eps[j];
    }
    digit_sample(z, pixels);
    printf("digit %d, z = (", n + 1);
    for (i = 0; i < DIGIT_LATENT_DIM; ++i) printf(i ? ", %.3f" : "%.3f", (double)z[i]);
    printf(")\n");
    print_digit(pixels);
  }
  return 0;
}
