"""Thin rclpy node shells: parameters -> core objects, callbacks -> core calls."""
