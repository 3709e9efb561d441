"""What every Countertop service runs on."""
