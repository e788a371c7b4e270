"""Test and benchmark tools that run against real nodes: ROS probes, synthetic inputs, the soak run.

Used by test/ and benchmarks/, never by the nodes themselves."""
