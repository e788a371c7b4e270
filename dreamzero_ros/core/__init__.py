"""Pure logic (no rclpy): embodiment config, stitching, time sync, chunk handling, safety."""
