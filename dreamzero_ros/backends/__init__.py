"""Policy backends: one PolicyBackend interface, local / remote / scripted implementations."""
