"""``make soak``: Moonlander under churn and faults, judged by an independent checker."""
