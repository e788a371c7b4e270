"""dreamzero_ros: ROS 2 nodes that run the DreamZero World Action Model in closed loop on robots."""

__version__ = "0.1.0"
