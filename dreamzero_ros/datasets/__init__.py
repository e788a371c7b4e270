"""Datasets: LeRobot v2.1 episodes in the layout DreamZero's release trains from, from the simulator's scripted
expert (`generate`) or from a run's MCAP recording (`export`)."""
