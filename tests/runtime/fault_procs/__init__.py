"""Scripts the fault tests run as separate processes."""
