"""Shop now on video: frames by time (PyAV), and pre-indexed shoppable timelines."""
