"""Board descriptions (``<name>.yaml``), shipped as the data package ``flow.boards_data`` (pyproject.toml)."""
