"""Pull mode: Pis that converge themselves with ansible-pull (the pull repository)."""
