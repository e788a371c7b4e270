"""MuJoCo simulated robots built from urdf/ (the default when no robot is attached)."""
