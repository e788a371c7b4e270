"""Training room: `dreamzero train` (LeRobot dataset -> samples, the flow-matching objective, the trainer and DDP).

Imports model/, datasets/ and core/; never rclpy or any ROS package (docs/architecture.md)."""
