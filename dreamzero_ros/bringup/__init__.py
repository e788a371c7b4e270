"""Starting the graph: the node plan (launch file and `dreamzero bringup` share it), the process
runner that starts nodes without a ROS install, and the DDS environment they run in."""
