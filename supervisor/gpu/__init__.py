"""GPU health: probes that read the GPUs, and the policy that turns readings into limits."""
