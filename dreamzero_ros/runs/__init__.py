"""What a run leaves behind: MCAP recording (rosbag2-shaped) and the run report (plots, video, summary)."""
