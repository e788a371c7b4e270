"""The DreamZero World Action Model in torch + diffusers (no rclpy)."""
