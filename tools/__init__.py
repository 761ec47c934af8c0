"""Host tooling of vae-edge (Pi bundle and emulation, fuzzing, the browser app, benchmarks, goals): never
installed on a device (the Raspberry Pi gets only runtime/)."""
