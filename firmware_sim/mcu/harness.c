/* Measurement harness, built for the host and for every emulated target of firmware_sim/targets/ (Cortex-M on
 * QEMU's mps2/mps3 boards with newlib semihosting, RV32 on QEMU's virt with picolibc semihosting) from one
 * source.
 *
 * Decodes VAE_EDGE_CHECK_LATENTS latents drawn by a fixed xorshift32 and prints an FNV-1a checksum of every
 * logit, which must be the same on every build. On a target it also prints the instruction counter's reading
 * over a loop of known length (calibration), over all decodes, and the stack high-water mark of a decode (stack
 * painted below the caller's frame, decode, untouched words counted). The counter: on Arm the SysTick on the
 * processor clock (under qemu -icount shift=0 one tick is 1e9 / clock instructions: 40 at the mps2-an386's
 * 25 MHz), on RISC-V the instret CSR (one per instruction).
 *
 * Built by firmware_sim.measure with -DVAE_EDGE_DECODER_H='"<m>_decoder.h"' -DVAE_EDGE_DECODE=<m>_decode
 * -DVAE_EDGE_INPUT_SIZE=<D> -DVAE_EDGE_OUTPUT_SIZE=<H*W*C>; the linker script names __stack_limit__, the lowest
 * address of the stack.
 */
#include <stdint.h>
#include <stdio.h>

#include VAE_EDGE_DECODER_H

#ifndef VAE_EDGE_CALIBRATION_LOOPS
#define VAE_EDGE_CALIBRATION_LOOPS 100000
#endif
#ifndef VAE_EDGE_CHECK_LATENTS
#define VAE_EDGE_CHECK_LATENTS 16
#endif

#if defined(__arm__) || defined(__riscv)
#define VAE_EDGE_ON_TARGET 1
#define STACK_PAINT 0xC0FFEE11u
extern uint32_t __stack_limit__;
#else
#define VAE_EDGE_ON_TARGET 0
#endif

#if defined(__arm__)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static void counter_start(void) {
  SYST_RVR = 0x00FFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}

static uint32_t counter_now(void) { return SYST_CVR; }

/* The counter runs down and wraps at 2^24: one decode must stay under 16.7 M ticks (671 M instructions at
 * 40 per tick). */
static uint32_t ticks_between(uint32_t start, uint32_t end) { return (start - end) & 0x00FFFFFFu; }

static uint32_t current_sp(void) {
  uint32_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

/* Four instructions per iteration (nop, nop, subs, bne). */
__attribute__((noinline)) static void spin(uint32_t n) {
  __asm__ volatile("1:\n nop\n nop\n subs %0, %0, #1\n bne 1b\n" : "+r"(n) : : "cc");
}
#elif defined(__riscv)
static void counter_start(void) {}

/* instret's low word (rdinstret): it counts up, one per retired instruction; a decode stays far below 2^32. */
static uint32_t counter_now(void) {
  uint32_t n;
  __asm__ volatile("rdinstret %0" : "=r"(n));
  return n;
}

static uint32_t ticks_between(uint32_t start, uint32_t end) { return end - start; }

static uint32_t current_sp(void) {
  uint32_t sp;
  __asm__ volatile("mv %0, sp" : "=r"(sp));
  return sp;
}

/* Four instructions per iteration (nop, nop, addi, bnez; compressed or not, each is one instruction). */
__attribute__((noinline)) static void spin(uint32_t n) {
  __asm__ volatile("1:\n nop\n nop\n addi %0, %0, -1\n bnez %0, 1b\n" : "+r"(n));
}
#endif

#if VAE_EDGE_ON_TARGET
__attribute__((noinline)) static void paint_stack(void) {
  uint32_t *p = &__stack_limit__;
  uint32_t *top = (uint32_t *)(current_sp() - 64u); /* stay clear of this function's own frame */
  while (p < top) *p++ = STACK_PAINT;
}

static uint32_t lowest_touched(void) {
  const uint32_t *p = &__stack_limit__;
  while (*p == STACK_PAINT) ++p;
  return (uint32_t)p;
}
#endif

static uint32_t rng_state = 0x12345678u;

static uint32_t xorshift32(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

int main(void) {
  static int8_t z[VAE_EDGE_INPUT_SIZE];
  static int8_t logits[VAE_EDGE_OUTPUT_SIZE];
  uint32_t hash = 2166136261u;
  int n, i;
#if VAE_EDGE_ON_TARGET
  uint32_t stack_max = 0;
  uint64_t ticks_total = 0;
  uint32_t t0, t1;
  counter_start();
  t0 = counter_now();
  spin(VAE_EDGE_CALIBRATION_LOOPS);
  t1 = counter_now();
  printf("calibration_instructions %lu\n", (unsigned long)(4u * VAE_EDGE_CALIBRATION_LOOPS));
  printf("calibration_ticks %lu\n", (unsigned long)ticks_between(t0, t1));
#endif
  for (n = 0; n < VAE_EDGE_CHECK_LATENTS; ++n) {
    for (i = 0; i < VAE_EDGE_INPUT_SIZE; ++i) z[i] = (int8_t)(xorshift32() >> 24);
#if VAE_EDGE_ON_TARGET
    {
      uint32_t sp, t0, t1, used;
      paint_stack();
      sp = current_sp();
      t0 = counter_now();
      VAE_EDGE_DECODE(z, logits);
      t1 = counter_now();
      ticks_total += ticks_between(t0, t1);
      used = sp - lowest_touched();
      if (used > stack_max) stack_max = used;
    }
#else
    VAE_EDGE_DECODE(z, logits);
#endif
    for (i = 0; i < VAE_EDGE_OUTPUT_SIZE; ++i) hash = (hash ^ (uint8_t)logits[i]) * 16777619u;
  }
  printf("latents %d\n", VAE_EDGE_CHECK_LATENTS);
  printf("checksum %08lx\n", (unsigned long)hash);
#if VAE_EDGE_ON_TARGET
  printf("ticks_total %lu\n", (unsigned long)ticks_total);
  printf("stack_bytes %lu\n", (unsigned long)stack_max);
#endif
  return 0;
}
