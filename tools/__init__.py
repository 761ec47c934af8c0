"""Host tooling of vae-edge: never installed on a device (the Raspberry Pi gets only runtime/)."""
