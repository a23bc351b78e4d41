"""What to measure: a cell (one validated configuration) and job files (YAML grids of cells)."""
