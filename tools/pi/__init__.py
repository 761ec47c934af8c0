"""Host orchestration of the Raspberry Pi path: the bundle, and the runtime alone on emulated boards."""
