/* Start-up for QEMU's Cortex-M boards (mps2-an386 M4, mps2-an500 M7, mps2-an505 M33, mps3-an547 M55: every Arm
 * target of firmware_sim/targets/) with newlib's semihosting library (--specs=rdimon.specs -nostartfiles): a
 * two-entry vector table, a reset handler that copies .data, zeroes .bss, opens the semihosting handles and calls
 * main. The default rdimon start-up locks up on these boards, hence this file. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
extern void initialise_monitor_handles(void);
extern int main(void);

void reset_handler(void);

__attribute__((section(".vectors"), used)) const void *const vector_table[2] = {
    (const void *)&__stack_top__,
    (const void *)reset_handler,
};

void reset_handler(void) {
  const uint32_t *src = &__data_load__;
  uint32_t *dst;
  /* -mfloat-abi=hard: give the FPU (CP10, CP11; on the M55 also Helium) full access before any floating-point
   * instruction runs. */
  *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
  __asm__ volatile("dsb\n isb" ::: "memory");
  for (dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  exit(main()); /* exit() ends QEMU through semihosting; a bare bkpt 0xab aborts it */
}

/* newlib calls these around main; nothing to construct here. */
void _init(void) {}
void _fini(void) {}
