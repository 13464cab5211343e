"""Pure multi-objective scheduling engine (numpy, pymoo; no Django). See issue 3."""
