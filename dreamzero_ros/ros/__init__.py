"""rclpy helpers shared by the nodes and the operator commands: the graph's names (`names`, importable
without rclpy), QoS by role, the node runtime (parameter tables, spinning, stamps) and message <-> numpy
conversion."""
