"""Network models: how long a request from a data site takes to be served on a cluster."""
